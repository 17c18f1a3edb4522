// HF byte-level BPE (GPT-2, OPT): tokenizer.json with a ByteLevel pre-tokenizer, or the GPT-2
// vocab.json + merges.txt pair. Splits words with GPT-2's regex (byte_level.h), merges by rank
// like HF tokenizers / tiktoken, and caches each word's ids.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/tokenizer/tokenizer.h"

namespace calq::core {

class BpeTokenizer final : public Tokenizer {
 public:
  /// An HF tokenizer.json. When the file is sound but not a configuration this class implements
  /// (Unigram, Metaspace, a Split regex, a normalizer...) returns nullptr with the reason in
  /// `*unsupported`, so a directory loader can try tokenizer.model next; throws calq::Error for
  /// unreadable or corrupt files.
  static std::unique_ptr<BpeTokenizer> from_tokenizer_json(const std::string& path,
                                                           std::string* unsupported);
  /// The same from tokenizer.json text in memory; `path` names it in errors and its directory is
  /// where a tokenizer_config.json would be looked for (the fuzz target's entry).
  static std::unique_ptr<BpeTokenizer> from_tokenizer_json_text(std::string_view text,
                                                                const std::string& path,
                                                                std::string* unsupported);
  /// GPT-2's vocab.json + merges.txt (a tokenizer_config.json beside them is read when present).
  static std::unique_ptr<BpeTokenizer> from_vocab_and_merges(const std::string& vocab_path,
                                                             const std::string& merges_path);
  /// The same from the two files' text in memory; the paths name them in errors and the vocab's
  /// directory is where a tokenizer_config.json would be looked for (the fuzz target's entry).
  static std::unique_ptr<BpeTokenizer> from_vocab_and_merges_text(std::string_view vocab_text,
                                                                  std::string_view merges_text,
                                                                  const std::string& vocab_path,
                                                                  const std::string& merges_path);
  ~BpeTokenizer() override;

  std::vector<int32_t> encode(std::string_view text, bool add_bos) const override;
  /// At a space between two ASCII letters ("a|␣b"): GPT-2's regex always ends a word there and
  /// starts " b" there, and merges stay inside words; none inside an added token.
  size_t next_split_point(std::string_view text, size_t from) const override;
  std::vector<int32_t> encode_continuation(std::string_view text) const override;
  std::string decode(const std::vector<int32_t>& ids) const override;
  int64_t vocab_size() const override;
  /// The token HF prepends (post_processor template, or tokenizer_config.json add_bos_token);
  /// GPT-2 has none.
  std::optional<int32_t> bos_id() const override;
  std::optional<int32_t> eos_id() const override;
  std::string kind() const override { return "bpe"; }
  const std::string& path() const override;

 private:
  struct State;
  explicit BpeTokenizer(std::unique_ptr<State> state);
  std::vector<int32_t> encode_word(std::string_view word) const;
  std::unique_ptr<State> state_;
};

}  // namespace calq::core
