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
  /// transformers' tokenizer made from this model (tokenizers' Metaspace pre-tokenizer with
  /// prepend_scheme "first": "▁" for spaces and a dummy prefix unless the text starts with a
  /// space, and no normalizer that removes extra whitespace), so runs of spaces and leading or
  /// trailing spaces stay, where SentencePiece collapses them.
  std::vector<int32_t> encode_as_transformers(std::string_view text, bool add_bos) const override;
  /// Between two ASCII characters that are pieces of their own and that no mergeable piece holds
  /// side by side ("e▁" in none of Llama-2's), neither a space when the model removes extra
  /// whitespace; none when it has user-defined symbols.
  size_t next_split_point(std::string_view text, size_t from) const override;
  std::vector<int32_t> encode_continuation(std::string_view text) const override;
  std::string decode(const std::vector<int32_t>& ids) const override;
  int64_t vocab_size() const override;
  std::optional<int32_t> bos_id() const override { return bos_id_; }
  std::optional<int32_t> eos_id() const override { return eos_id_; }
  std::string kind() const override { return "sentencepiece"; }
  const std::string& path() const override { return path_; }

  /// SentencePiece's normalized form of `text` ("▁Hello▁world"), exposed for tests.
  std::string normalize(std::string_view text) const;

 private:
  std::string normalize(std::string_view text, bool dummy_prefix) const;
  std::string normalize(std::string_view text, bool dummy_prefix,
                        bool remove_extra_whitespaces) const;
  std::vector<int32_t> encode_normalized(const std::string& normalized, bool add_bos) const;
  struct Vocab;
  std::string path_;
  std::unique_ptr<const Vocab> vocab_;
  std::optional<int32_t> bos_id_;
  std::optional<int32_t> eos_id_;
};

}  // namespace calq::core
