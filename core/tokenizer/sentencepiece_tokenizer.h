// SentencePiece BPE tokenizer.model (HF Llama/Mistral checkpoints, Meta's Llama-2 tokenizer),
// encoding and decoding as libsentencepiece 0.1.97 does (normalizer.cc, bpe_model.cc,
// sentencepiece_processor.cc), without linking it: see sentencepiece_model.h for why. Encoding a
// whole text plus one BOS reproduces transformers' token counts for the shared sotu/wikitext texts.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/tokenizer/tokenizer.h"

namespace calq::core {

class SentencepieceTokenizer final : public Tokenizer {
 public:
  /// Reads a BPE-type model with an identity normalizer (no precompiled character map); other
  /// models (Unigram, NFKC) are rejected with a calq::Error naming the file.
  explicit SentencepieceTokenizer(const std::string& path);
  /// The same from the file's bytes in memory; `path` only names it in errors (fuzz target).
  SentencepieceTokenizer(const std::string& path, std::string_view bytes);
  ~SentencepieceTokenizer() override;

  std::vector<int32_t> encode(std::string_view text, bool add_bos) const override;
  std::string decode(const std::vector<int32_t>& ids) const override;
  int64_t vocab_size() const override;
  std::optional<int32_t> bos_id() const override { return bos_id_; }
  std::optional<int32_t> eos_id() const override { return eos_id_; }
  std::string kind() const override { return "sentencepiece"; }
  const std::string& path() const override { return path_; }

  /// SentencePiece's normalized form of `text` ("▁Hello▁world"), exposed for tests.
  std::string normalize(std::string_view text) const;

 private:
  struct Vocab;
  std::string path_;
  std::unique_ptr<const Vocab> vocab_;
  std::optional<int32_t> bos_id_;
  std::optional<int32_t> eos_id_;
};

}  // namespace calq::core
