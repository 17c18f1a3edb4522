#include "core/tokenizer/byte_level.h"

#include <array>
#include <cstdint>

#include <unicode/uchar.h>

#include "core/tokenizer/utf8.h"

namespace calq::core {
namespace {

constexpr size_t kNumBytes = 256;
// bytes_to_unicode maps the 68 non-printable bytes to U+0100..U+0143.
constexpr uint32_t kByteLevelCodePoints = 256 + 68;

// GPT-2 encoder.py bytes_to_unicode: printable Latin-1 bytes stand for themselves, the others
// for U+0100 upwards in byte order, so vocab.json shows every byte as a visible character
// (the space 0x20 is "Ġ" = U+0120).
const std::array<uint32_t, kNumBytes>& byte_code_points() {
  static const std::array<uint32_t, kNumBytes> table = [] {
    std::array<uint32_t, kNumBytes> t{};
    uint32_t next = 256;
    for (uint32_t b = 0; b < kNumBytes; ++b) {
      const bool printable =
          (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      t[b] = printable ? b : next++;
    }
    return t;
  }();
  return table;
}

const std::array<int16_t, kByteLevelCodePoints>& code_point_bytes() {
  static const std::array<int16_t, kByteLevelCodePoints> table = [] {
    std::array<int16_t, kByteLevelCodePoints> t{};
    t.fill(-1);
    for (uint32_t b = 0; b < kNumBytes; ++b)
      t[byte_code_points()[b]] = static_cast<int16_t>(b);
    return t;
  }();
  return table;
}

enum class CharClass : uint8_t { kLetter, kNumber, kSpace, kOther };

// \p{L}, \p{N} and \s as Unicode defines them (\s = White_Space, as Rust's regex in HF
// tokenizers and tiktoken); malformed bytes count as "other".
CharClass classify(const Utf8Char& c) {
  if (!c.valid)
    return CharClass::kOther;
  const auto cp = static_cast<UChar32>(c.code_point);
  if (u_isUWhiteSpace(cp))
    return CharClass::kSpace;
  const uint32_t mask = U_GET_GC_MASK(cp);
  if (mask & U_GC_L_MASK)
    return CharClass::kLetter;
  if (mask & U_GC_N_MASK)
    return CharClass::kNumber;
  return CharClass::kOther;
}

// The length of a contraction ('s 't 're 've 'm 'll 'd) at `i`, else 0.
size_t contraction_length(std::string_view s, size_t i) {
  if (s[i] != '\'' || i + 1 >= s.size())
    return 0;
  const char a = s[i + 1];
  if (a == 's' || a == 't' || a == 'm' || a == 'd')
    return 2;
  if (i + 2 >= s.size())
    return 0;
  const char b = s[i + 2];
  if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))
    return 3;
  return 0;
}

}  // namespace

std::optional<std::string> byte_level_to_bytes(std::string_view token) {
  std::string bytes;
  bytes.reserve(token.size());
  for (size_t i = 0; i < token.size();) {
    const Utf8Char c = decode_utf8(token, i);
    if (!c.valid || c.code_point >= kByteLevelCodePoints)
      return std::nullopt;
    const int16_t b = code_point_bytes()[c.code_point];
    if (b < 0)
      return std::nullopt;
    bytes.push_back(static_cast<char>(b));
    i += c.length;
  }
  return bytes;
}

std::string byte_to_byte_level(unsigned char byte) {
  const uint32_t cp = byte_code_points()[byte];  // < 0x800: one or two UTF-8 bytes
  if (cp < 0x80)
    return std::string(1, static_cast<char>(cp));
  return {static_cast<char>(0xC0 | (cp >> 6)), static_cast<char>(0x80 | (cp & 0x3F))};
}

std::vector<std::string_view> split_gpt2_words(std::string_view text) {
  struct Char {
    size_t offset;
    CharClass cls;
  };
  std::vector<Char> chars;
  chars.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    const Utf8Char c = decode_utf8(text, i);
    chars.push_back({i, classify(c)});
    i += c.length;
  }
  const size_t n = chars.size();
  const auto offset = [&](size_t k) { return k < n ? chars[k].offset : text.size(); };
  std::vector<std::string_view> words;
  for (size_t i = 0; i < n;) {
    size_t j = i;
    if (const size_t contraction = contraction_length(text, chars[i].offset)) {
      j = i + contraction;  // ASCII: one char per byte
    } else if (text[chars[i].offset] == ' ' && i + 1 < n && chars[i + 1].cls != CharClass::kSpace) {
      // " ?\p{L}+", " ?\p{N}+", " ?[^\s\p{L}\p{N}]+" with the optional space
      const CharClass cls = chars[i + 1].cls;
      j = i + 1;
      while (j < n && chars[j].cls == cls)
        ++j;
    } else if (chars[i].cls != CharClass::kSpace) {
      const CharClass cls = chars[i].cls;
      while (j < n && chars[j].cls == cls)
        ++j;
    } else {
      while (j < n && chars[j].cls == CharClass::kSpace)
        ++j;
      // "\s+(?!\S)" leaves the last space of a run for the word after it; a single space
      // before a word falls through to "\s+".
      if (j < n && j - i > 1)
        --j;
    }
    words.push_back(text.substr(chars[i].offset, offset(j) - chars[i].offset));
    i = j;
  }
  return words;
}

}  // namespace calq::core
