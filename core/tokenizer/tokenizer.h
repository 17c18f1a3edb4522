// The tokenizer interface every family uses, and the loader that picks an implementation from
// a path: llama2.c tokenizer.bin (tok512.bin), SentencePiece tokenizer.model, HF tokenizer.json
// (byte-level BPE) or a GPT-2 vocab.json + merges.txt pair.
#pragma once

#include <cstddef>
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
  /// As transformers' tokenizer for the same files encodes (lm-eval's `hf` model tokenizes with
  /// it): encode() unless the two differ — SentencePiece models, whose extra whitespace
  /// transformers keeps.
  virtual std::vector<int32_t> encode_as_transformers(std::string_view text, bool add_bos) const {
    return encode(text, add_bos);
  }
  virtual std::string decode(const std::vector<int32_t>& ids) const = 0;
  virtual int64_t vocab_size() const = 0;
  virtual std::optional<int32_t> bos_id() const = 0;
  virtual std::optional<int32_t> eos_id() const = 0;
  virtual std::string kind() const = 0;  ///< "llama2c", "sentencepiece", "bpe"
  virtual const std::string& path() const = 0;

  // Chunked encoding (chunked_encoding.h), so that evaluating a few windows of a large text
  // tokenizes only the text they need. A split point b of `text` is a byte offset where
  //   encode(text, bos) == encode(text[0, b), bos) ++ encode_continuation(text[b, ..))
  // and, b′ > b being another, the continuation splits alike: no merge, pre-token or added
  // token spans b. Each implementation proves it from the characters around b and its vocab.

  /// The first split point of `text` at or after `from` (> 0), text.size() when none follows.
  /// By default none: a tokenizer that proves nothing is encoded in one piece.
  virtual size_t next_split_point(std::string_view text, size_t /*from*/) const {
    return text.size();
  }
  /// Tokens of text that follows a split point: no BOS, no dummy prefix, no prefix space.
  /// Called only after next_split_point returned one, so a tokenizer that overrides that
  /// overrides this too; the default reports the bug.
  virtual std::vector<int32_t> encode_continuation(std::string_view text) const;
};

/// Loads a tokenizer from a file (by extension/content) or a model directory (looks for
/// tokenizer.json, tokenizer.model, vocab.json+merges.txt, in that order).
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path);

/// Throws "<tokenizer path>: N tokens but the model's embedding has M rows" when the
/// tokenizer can emit ids the model cannot embed.
void check_tokenizer_fits(const Tokenizer& tokenizer, int64_t model_vocab_size);

}  // namespace calq::core
