#include "cli/error_line.h"

#include <algorithm>

#include <fmt/format.h>

#include "core/tokenizer/utf8.h"

namespace calq::cli {
namespace {

// The escaped form of one character (the text at `pos` of `length` bytes), or "" to keep it.
std::string escape(std::string_view text, size_t pos, const core::Utf8Char& c) {
  const auto byte = static_cast<unsigned char>(text[pos]);
  if (!c.valid)
    return fmt::format("\\x{:02x}", byte);
  if (c.code_point >= 0x20 && c.code_point != 0x7F && (c.code_point < 0x80 || c.code_point > 0x9F))
    return {};
  switch (c.code_point) {
    case '\n': return "\\n";
    case '\t': return "\\t";
    case '\r': return "\\r";
    case '\0': return "\\0";
    default: break;
  }
  if (c.code_point < 0x80)
    return fmt::format("\\x{:02x}", byte);
  return fmt::format("\\u{:04x}", c.code_point);
}

}  // namespace

std::string terminal_line(std::string_view message, size_t max_bytes) {
  std::string out;
  out.reserve(std::min(message.size(), max_bytes) + 3);
  for (size_t pos = 0; pos < message.size();) {
    const core::Utf8Char c = core::decode_utf8(message, pos);
    const std::string escaped = escape(message, pos, c);
    const std::string_view piece =
        escaped.empty() ? message.substr(pos, c.length) : std::string_view(escaped);
    if (out.size() + piece.size() > max_bytes) {
      out += "...";
      break;
    }
    out.append(piece);
    pos += c.length;
  }
  return out;
}

}  // namespace calq::cli
