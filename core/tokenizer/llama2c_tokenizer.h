// karpathy/llama2.c tokenizer.bin (e.g. stories260K's tok512.bin), encoding and decoding exactly
// as run.c's `encode` / `decode` (docs/formats.md §5.7). Used for the llama2.c family and its eval
// text; the merge loop runs on a heap (pair_merge.h) so a 400 KB text encodes in a fraction
// of a second.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/tokenizer/tokenizer.h"

namespace calq::core {

class Llama2cTokenizer final : public Tokenizer {
 public:
  static constexpr int32_t kBosId = 1;  // run.c hard-codes BOS = 1, EOS = 2
  static constexpr int32_t kEosId = 2;
  static constexpr int32_t kByteOffset = 3;  // byte b falls back to id b + 3 (<0x00> is id 3)

  /// Reads `path`. `expected_n_tokens` (the format stores no count; llama2.c names its exports
  /// tok<N>.bin) lets a truncated file say how much is missing and is checked when given.
  explicit Llama2cTokenizer(const std::string& path,
                            std::optional<int64_t> expected_n_tokens = std::nullopt);
  /// The same from the file's bytes in memory; `path` only names it in errors (fuzz target).
  Llama2cTokenizer(const std::string& path, std::string_view bytes,
                   std::optional<int64_t> expected_n_tokens = std::nullopt);

  std::vector<int32_t> encode(std::string_view text, bool add_bos) const override;
  /// Between two ASCII characters that are pieces of their own and that no piece holds side by
  /// side (so no merge can join them; " " + "a" is in " a", "a" + " " usually in none).
  size_t next_split_point(std::string_view text, size_t from) const override;
  std::vector<int32_t> encode_continuation(std::string_view text) const override;
  std::string decode(const std::vector<int32_t>& ids) const override;
  int64_t vocab_size() const override { return static_cast<int64_t>(pieces_.size()); }
  std::optional<int32_t> bos_id() const override { return kBosId; }
  std::optional<int32_t> eos_id() const override { return kEosId; }
  std::string kind() const override { return "llama2c"; }
  const std::string& path() const override { return path_; }

  /// The stored bytes of token `id` (byte tokens read "<0x0A>", as in the file).
  const std::string& piece(int32_t id) const { return pieces_.at(static_cast<size_t>(id)); }
  float score(int32_t id) const { return scores_.at(static_cast<size_t>(id)); }
  /// run.c's str_lookup: the id whose piece is exactly `bytes` (the lowest id if repeated).
  std::optional<int32_t> find_piece(const std::string& bytes) const;

  /// The N of a file named tok<N>.bin, which llama2.c's tokenizer.py writes for an N-token vocab.
  static std::optional<int64_t> n_tokens_from_file_name(const std::string& path);

 private:
  std::string path_;
  int32_t max_token_length_ = 0;
  std::vector<std::string> pieces_;
  std::vector<float> scores_;
  std::unordered_map<std::string, int32_t> ids_;
  std::array<bool, 128> ascii_piece_{};        ///< the ASCII character is a piece
  std::vector<bool> ascii_pair_in_piece_;      ///< [128 * a + b]: some piece holds "ab"

  /// run.c's encode after the BOS and dummy prefix: code points, byte fallback, merges.
  void encode_text(std::string_view text, std::vector<int32_t>& tokens) const;
};

}  // namespace calq::core
