// The tokenizer interface every family uses, and the loader that picks an implementation from
// a path: llama2.c tokenizer.bin (tok512.bin), SentencePiece tokenizer.model, HF tokenizer.json
// (byte-level BPE) or a GPT-2 vocab.json + merges.txt pair.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace calq::core {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  /// Token ids of `text`; with `add_bos` the tokenizer's BOS (if it has one) comes first.
  virtual std::vector<int32_t> encode(std::string_view text, bool add_bos) const = 0;
  virtual std::string decode(const std::vector<int32_t>& ids) const = 0;
  virtual int64_t vocab_size() const = 0;
  virtual std::optional<int32_t> bos_id() const = 0;
  virtual std::optional<int32_t> eos_id() const = 0;
  virtual std::string kind() const = 0;  ///< "llama2c", "sentencepiece", "bpe"
  virtual const std::string& path() const = 0;
};

/// Loads a tokenizer from a file (by extension/content) or a model directory (looks for
/// tokenizer.json, tokenizer.model, vocab.json+merges.txt, in that order).
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path);

/// Throws "<tokenizer path>: N tokens but the model's embedding has M rows" when the
/// tokenizer can emit ids the model cannot embed.
void check_tokenizer_fits(const Tokenizer& tokenizer, int64_t model_vocab_size);

}  // namespace calq::core
