#include "core/tokenizer/llama2c_tokenizer.h"

#include <algorithm>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>

#include "core/error.h"
#include "core/io/json_text.h"
#include "core/tokenizer/file_bytes.h"
#include "core/tokenizer/pair_merge.h"

namespace calq::core {
namespace {

// Far above any real piece (llama2 32k: 48 bytes); a larger header means another file type.
constexpr int32_t kMaxPlausibleTokenLength = 1 << 16;
constexpr int32_t kNumBytePieces = 256;
// run.c starts its best-score search at -1e10: pairs scoring at or below it never merge.
constexpr float kNoMergeScore = -1e10f;

int32_t read_le_i32(std::string_view bytes, size_t pos) {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data() + pos);
  return static_cast<int32_t>(static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 |
                              static_cast<uint32_t>(p[2]) << 16 |
                              static_cast<uint32_t>(p[3]) << 24);
}

float read_le_f32(std::string_view bytes, size_t pos) {
  const uint32_t bits = static_cast<uint32_t>(read_le_i32(bytes, pos));
  float value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  return -1;
}

// run.c decode: pieces "<0xXX>" stand for the raw byte.
std::optional<char> byte_piece_value(std::string_view piece) {
  if (piece.size() != 6 || piece.substr(0, 3) != "<0x" || piece[5] != '>')
    return std::nullopt;
  const int hi = hex_digit(piece[3]);
  const int lo = hex_digit(piece[4]);
  if (hi < 0 || lo < 0)
    return std::nullopt;
  return static_cast<char>(hi * 16 + lo);
}

}  // namespace

Llama2cTokenizer::Llama2cTokenizer(const std::string& path,
                                   std::optional<int64_t> expected_n_tokens)
    : Llama2cTokenizer(path, read_file_bytes(path), expected_n_tokens) {}

Llama2cTokenizer::Llama2cTokenizer(const std::string& path,
                                   std::string_view bytes,
                                   std::optional<int64_t> expected_n_tokens)
    : path_(path) {
  CALQ_CHECK(bytes.size() >= 4,
             "{}: {} bytes; expected a llama2.c tokenizer.bin (int32 max_token_length, then "
             "float32 score, int32 length and the bytes of each token)",
             path, bytes.size());
  max_token_length_ = read_le_i32(bytes, 0);
  CALQ_CHECK(max_token_length_ > 0 && max_token_length_ <= kMaxPlausibleTokenLength,
             "{}: max_token_length {} in the header; expected 1..{} (not a llama2.c "
             "tokenizer.bin?)",
             path, max_token_length_, kMaxPlausibleTokenLength);
  const std::string of_total =
      expected_n_tokens ? fmt::format(" of {}", *expected_n_tokens) : std::string();
  size_t pos = 4;
  while (pos < bytes.size()) {
    const size_t index = pieces_.size();
    CALQ_CHECK(bytes.size() - pos >= 8,
               "{}: truncated at token {}{}; expected its score and length", path, index, of_total);
    const float score = read_le_f32(bytes, pos);
    const int32_t length = read_le_i32(bytes, pos + 4);
    pos += 8;
    CALQ_CHECK(length >= 0 && length <= max_token_length_,
               "{}: token {} has byte length {}; expected 0..{} (max_token_length; not a "
               "llama2.c tokenizer.bin?)",
               path, index, length, max_token_length_);
    CALQ_CHECK(bytes.size() - pos >= static_cast<size_t>(length),
               "{}: truncated at token {}{}; expected {} more bytes for its piece", path, index,
               of_total, length);
    pieces_.emplace_back(bytes.substr(pos, static_cast<size_t>(length)));
    scores_.push_back(score);
    pos += static_cast<size_t>(length);
  }
  const int64_t n = static_cast<int64_t>(pieces_.size());
  if (expected_n_tokens) {
    CALQ_CHECK(n >= *expected_n_tokens, "{}: truncated at token {}{}; expected {} tokens", path, n,
               of_total, *expected_n_tokens);
    CALQ_CHECK(n == *expected_n_tokens, "{}: {} tokens; expected {}", path, n, *expected_n_tokens);
  }
  CALQ_CHECK(n >= kByteOffset + kNumBytePieces,
             "{}: {} tokens; expected at least {} (<unk>, <s>, </s> and the byte pieces "
             "<0x00>..<0xFF>)",
             path, n, kByteOffset + kNumBytePieces);
  for (int32_t b = 0; b < kNumBytePieces; ++b) {
    const std::string& piece = pieces_[static_cast<size_t>(kByteOffset + b)];
    const std::optional<char> value = byte_piece_value(piece);
    CALQ_CHECK(value && static_cast<unsigned char>(*value) == b,
               "{}: token {} is {}; expected the byte piece <0x{:02X}> (run.c's byte "
               "fallback uses id byte + 3)",
               path, kByteOffset + b, quote_string(piece), b);
  }
  ids_.reserve(pieces_.size());
  for (size_t i = 0; i < pieces_.size(); ++i) {
    ids_.emplace(pieces_[i], static_cast<int32_t>(i));  // keeps the first of repeated pieces
  }
  ascii_pair_in_piece_.assign(128 * 128, false);
  for (const std::string& piece : pieces_) {
    if (piece.size() == 1 && static_cast<unsigned char>(piece[0]) < 128)
      ascii_piece_[static_cast<unsigned char>(piece[0])] = true;
    for (size_t k = 1; k < piece.size(); ++k) {
      const auto a = static_cast<unsigned char>(piece[k - 1]);
      const auto b = static_cast<unsigned char>(piece[k]);
      if (a < 128 && b < 128)
        ascii_pair_in_piece_[128 * a + b] = true;
    }
  }
}

std::optional<int32_t> Llama2cTokenizer::find_piece(const std::string& bytes) const {
  const auto it = ids_.find(bytes);
  if (it == ids_.end())
    return std::nullopt;
  return it->second;
}

std::optional<int64_t> Llama2cTokenizer::n_tokens_from_file_name(const std::string& path) {
  const std::string name = std::filesystem::path(path).filename().string();
  constexpr std::string_view kPrefix = "tok";
  constexpr std::string_view kSuffix = ".bin";
  if (name.size() <= kPrefix.size() + kSuffix.size() || name.compare(0, 3, kPrefix) != 0 ||
      name.compare(name.size() - kSuffix.size(), kSuffix.size(), kSuffix) != 0) {
    return std::nullopt;
  }
  const std::string digits =
      name.substr(kPrefix.size(), name.size() - kPrefix.size() - kSuffix.size());
  if (digits.size() > 9)
    return std::nullopt;
  for (char c : digits) {
    if (c < '0' || c > '9')
      return std::nullopt;
  }
  return std::stoll(digits);
}

std::vector<int32_t> Llama2cTokenizer::encode(std::string_view text, bool add_bos) const {
  std::vector<int32_t> tokens;
  tokens.reserve(text.size() + 2);
  if (add_bos)
    tokens.push_back(kBosId);
  if (!text.empty()) {
    // run.c looks up " " without checking; a vocab without it would emit -1, so fall back to
    // the space byte instead.
    tokens.push_back(find_piece(" ").value_or(kByteOffset + ' '));
  }
  encode_text(text, tokens);
  return tokens;
}

std::vector<int32_t> Llama2cTokenizer::encode_continuation(std::string_view text) const {
  std::vector<int32_t> tokens;
  tokens.reserve(text.size());
  encode_text(text, tokens);
  return tokens;
}

size_t Llama2cTokenizer::next_split_point(std::string_view text, size_t from) const {
  // Both neighbours ASCII: no code point spans the cut. Both pieces of their own: the token
  // left of the cut ends with the left character's piece, the one right of it starts with the
  // right one's, in every state of the merge loop, so a merge across the cut would make a piece
  // holding the two side by side. None does, so the two sides merge independently (the merge
  // order within each side is unchanged: see pair_merge.h, leftmost among equal priorities).
  for (size_t b = std::max<size_t>(from, 1); b < text.size(); ++b) {
    const auto left = static_cast<unsigned char>(text[b - 1]);
    const auto right = static_cast<unsigned char>(text[b]);
    if (left < 128 && right < 128 && ascii_piece_[left] && ascii_piece_[right] &&
        !ascii_pair_in_piece_[128 * left + right]) {
      return b;
    }
  }
  return text.size();
}

void Llama2cTokenizer::encode_text(std::string_view text, std::vector<int32_t>& tokens) const {
  // run.c: a code point is a byte plus the continuation bytes after it, at most 4 bytes; one
  // missing from the vocab becomes its bytes.
  std::string code_point;
  for (size_t i = 0; i < text.size();) {
    size_t length = 1;
    while (i + length < text.size() && length < 4 &&
           (static_cast<unsigned char>(text[i + length]) & 0xC0) == 0x80) {
      ++length;
    }
    code_point.assign(text.data() + i, length);
    if (const auto it = ids_.find(code_point); it != ids_.end()) {
      tokens.push_back(it->second);
    } else {
      for (unsigned char byte : code_point)
        tokens.push_back(kByteOffset + byte);
    }
    i += length;
  }
  // BOS takes part in the merging, as in run.c (no piece starts with its "\n<s>\n").
  std::string joined;
  merge_adjacent_pairs(tokens, [&](int32_t left, int32_t right) -> std::optional<PairMerge> {
    joined.assign(pieces_[static_cast<size_t>(left)]);
    joined.append(pieces_[static_cast<size_t>(right)]);
    const auto it = ids_.find(joined);
    if (it == ids_.end())
      return std::nullopt;
    const float score = scores_[static_cast<size_t>(it->second)];
    if (!(score > kNoMergeScore))
      return std::nullopt;
    return PairMerge{score, it->second};
  });
}

std::string Llama2cTokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string text;
  for (size_t k = 0; k < ids.size(); ++k) {
    const int32_t id = ids[k];
    CALQ_CHECK(id >= 0 && id < static_cast<int32_t>(pieces_.size()),
               "{}: token id {} at position {} is out of range; expected 0..{}", path_, id, k,
               pieces_.size() - 1);
    // run.c never prints BOS / EOS: they delimit sequences.
    if (id == kBosId || id == kEosId)
      continue;
    std::string_view piece = pieces_[static_cast<size_t>(id)];
    // run.c: the dummy-prefix space of the first piece after BOS is not text.
    if (k > 0 && ids[k - 1] == kBosId && !piece.empty() && piece[0] == ' ') {
      piece.remove_prefix(1);
    }
    if (const std::optional<char> byte = byte_piece_value(piece)) {
      text.push_back(*byte);
    } else {
      text.append(piece);
    }
  }
  return text;
}

}  // namespace calq::core
