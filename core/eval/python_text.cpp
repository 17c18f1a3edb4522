#include "core/eval/python_text.h"

#include "core/tokenizer/utf8.h"

namespace calq::core::python_text {
namespace {

/// Every occurrence of `from` replaced by `to`, left to right, as str.replace.
std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  std::string out;
  size_t start = 0;
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, start)) {
    out.append(s, start, at - start);
    out += to;
    start = at + from.size();
  }
  out.append(s, start, std::string::npos);
  return out;
}

bool is_space_at(const std::string& s, size_t i, uint32_t* length);

/// re.sub(r"O\s*([^C]*?)\s*C", r"O\1C", s) for one bracket pair: each O, up to the first C after
/// it, loses the whitespace just inside both ends (Python's \s); scanned left to right, without
/// overlap, as re.sub. Written out rather than with std::regex, whose backtracking recurses once
/// per character and could exhaust the stack on a long page.
std::string trim_inside(const std::string& s, char open, char close) {
  std::string out;
  size_t i = 0;
  while (i < s.size()) {
    if (s[i] != open) {
      out += s[i++];
      continue;
    }
    const size_t end = s.find(close, i + 1);
    if (end == std::string::npos) {
      out += s[i++];
      continue;
    }
    size_t first = i + 1;
    while (first < end) {
      uint32_t length = 0;
      if (!is_space_at(s, first, &length)) break;
      first += length;
    }
    const std::string inner = s.substr(first, end - first);
    out += open;
    out += inner.substr(0, rstripped_size(inner));
    out += close;
    i = end + 1;
  }
  return out;
}

/// re.sub(r"\[.*?\]", "", s): each "[" up to the first "]" after it, unless a "\n" comes first
/// (Python's . matches any character but \n).
std::string drop_bracketed(const std::string& s) {
  std::string out;
  size_t i = 0;
  while (i < s.size()) {
    if (s[i] == '[') {
      const size_t end = s.find_first_of("]\n", i + 1);
      if (end != std::string::npos && s[end] == ']') {
        i = end + 1;
        continue;
      }
    }
    out += s[i++];
  }
  return out;
}

/// re.sub(r"/' [0-9]/", r"/'[0-9]/", s): the pattern's digit is replaced by the literal text.
std::string wikitext_slash_quote(const std::string& s) {
  std::string out;
  size_t i = 0;
  while (i < s.size()) {
    if (s.compare(i, 3, "/' ") == 0 && i + 4 < s.size() && s[i + 3] >= '0' && s[i + 3] <= '9' &&
        s[i + 4] == '/') {
      out += "/'[0-9]/";
      i += 5;
      continue;
    }
    out += s[i++];
  }
  return out;
}

bool is_space_at(const std::string& s, size_t i, uint32_t* length) {
  const Utf8Char c = decode_utf8(s, i);
  *length = c.length;
  return c.valid && is_space(c.code_point);
}

}  // namespace

bool is_space(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 ||
         cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
         cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

size_t rstripped_size(const std::string& s) {
  size_t end = 0;  // the byte after the last non-space character
  for (size_t i = 0; i < s.size();) {
    uint32_t length = 0;
    const bool space = is_space_at(s, i, &length);
    i += length;
    if (!space) end = i;
  }
  return end;
}

int64_t split_whitespace_count(const std::string& s) {
  int64_t runs = 0;
  bool in_run = false;
  for (size_t i = 0; i < s.size();) {
    uint32_t length = 0;
    const bool space = is_space_at(s, i, &length);
    if (space && !in_run) ++runs;
    in_run = space;
    i += length;
  }
  return 1 + runs;
}

int64_t code_points(const std::string& s) {
  int64_t n = 0;
  for (size_t i = 0; i < s.size(); ++n) i += decode_utf8(s, i).length;
  return n;
}

std::string capitalize(const std::string& s) {
  std::string out = s;
  for (size_t i = 0; i < out.size(); ++i) {
    const auto c = static_cast<unsigned char>(out[i]);
    if (i == 0 && c >= 'a' && c <= 'z') out[i] = static_cast<char>(c - 'a' + 'A');
    if (i > 0 && c >= 'A' && c <= 'Z') out[i] = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

std::string strip(const std::string& text) {
  size_t begin = 0;
  while (begin < text.size()) {
    uint32_t length = 0;
    if (!is_space_at(text, begin, &length)) break;
    begin += length;
  }
  const size_t end = rstripped_size(text);
  return end > begin ? text.substr(begin, end - begin) : std::string();
}

std::string hellaswag_preprocess(const std::string& text) {
  std::string s = strip(text);
  s = replace_all(s, " [title]", ". ");
  s = drop_bracketed(s);
  return replace_all(s, "  ", " ");
}

std::string wikitext_detokenize(const std::string& page) {
  std::string s = page;
  // contractions
  s = replace_all(s, "s '", "s'");
  s = wikitext_slash_quote(s);
  // number separators
  s = replace_all(s, " @-@ ", "-");
  s = replace_all(s, " @,@ ", ",");
  s = replace_all(s, " @.@ ", ".");
  // punctuation
  for (const char* p : {":", ";", ".", "!", "?", ","})
    s = replace_all(s, std::string(" ") + p + " ", std::string(p) + " ");
  // double brackets
  s = trim_inside(s, '(', ')');
  s = trim_inside(s, '[', ']');
  s = trim_inside(s, '{', '}');
  s = trim_inside(s, '"', '"');
  s = trim_inside(s, '\'', '\'');
  // miscellaneous
  s = replace_all(s, "= = = =", "====");
  s = replace_all(s, "= = =", "===");
  s = replace_all(s, "= =", "==");
  s = replace_all(s, " \xC2\xB0 ", "\xC2\xB0");  // chr(176)
  s = replace_all(s, " \n", "\n");
  s = replace_all(s, "\n ", "\n");
  s = replace_all(s, " N ", " 1 ");
  return replace_all(s, " 's", "'s");
}

}  // namespace calq::core::python_text
