// UTF-8 decoding shared by the GPT-2 pre-tokenizer and the SentencePiece normalizer, which both
// walk text one code point at a time and must treat a malformed byte as a unit of its own.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace calq::core {

struct Utf8Char {
  uint32_t code_point;
  uint32_t length;  // bytes consumed: 1 for a malformed byte
  bool valid;
};

/// The code point of `s` at byte `i` (< s.size()). Overlong forms, surrogates, code points past
/// U+10FFFF and truncated sequences are malformed: one invalid byte, as SentencePiece's DecodeUTF8.
inline Utf8Char decode_utf8(std::string_view s, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char lead = byte(i);
  if (lead < 0x80)
    return {lead, 1, true};
  uint32_t length = 0;
  uint32_t cp = 0;
  uint32_t min_cp = 0;
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2, cp = lead & 0x1Fu, min_cp = 0x80;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3, cp = lead & 0x0Fu, min_cp = 0x800;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4, cp = lead & 0x07u, min_cp = 0x10000;
  } else {
    return {lead, 1, false};
  }
  if (i + length > s.size())
    return {lead, 1, false};
  for (uint32_t k = 1; k < length; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80)
      return {lead, 1, false};
    cp = cp << 6 | (byte(i + k) & 0x3Fu);
  }
  if (cp < min_cp || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
    return {lead, 1, false};
  return {cp, length, true};
}

}  // namespace calq::core
