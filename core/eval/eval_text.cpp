#include "core/eval/eval_text.h"

#include <filesystem>
#include <fstream>
#include <system_error>

#include "core/error.h"
#include "core/io/small_file.h"

namespace calq::core {

const char* text_join_name(TextJoin join) {
  switch (join) {
    case TextJoin::AsIs: return "as-is";
    case TextJoin::WikitextRows: return "wikitext-rows";
  }
  return "?";
}

TextJoin parse_text_join(const std::string& name) {
  if (name == "as-is") return TextJoin::AsIs;
  if (name == "wikitext-rows") return TextJoin::WikitextRows;
  fail("--join: unknown value \"{}\"; expected as-is or wikitext-rows", name);
}

std::string join_wikitext_rows(const std::string& raw) {
  // HF wikitext.py: every line of the raw file (with its "\n") is a row; rows that are only
  // whitespace become "". The GPTQ protocol then joins rows with "\n\n".
  std::string out;
  out.reserve(raw.size() * 2);
  size_t start = 0;
  bool first = true;
  while (start < raw.size()) {
    size_t end = raw.find('\n', start);
    end = end == std::string::npos ? raw.size() : end + 1;
    const std::string_view row(raw.data() + start, end - start);
    const bool blank = row.find_first_not_of(" \t\r\n\f\v") == std::string_view::npos;
    if (!first) out += "\n\n";
    if (!blank) out.append(row);
    first = false;
    start = end;
  }
  return out;
}

EvalText read_eval_text(const std::string& path, TextJoin join) {
  const std::string kind = describe_non_regular(path);  // a FIFO or /dev/zero would never end
  CALQ_CHECK(kind.empty(), "{}: {}; expected a UTF-8 text file (a regular file)", path,
             kind == "missing" ? "no such text file" : kind);
  std::ifstream in(path, std::ios::binary);
  CALQ_CHECK(in.good(), "{}: cannot open for reading", path);
  EvalText result;
  result.path = path;
  result.dataset = std::filesystem::path(path).stem().string();
  result.join = join;
  // Straight into the string, sized once: a stringstream (or a growing string) would hold a
  // second copy of a large text.
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  CALQ_CHECK(!ec, "{}: cannot stat ({})", path, ec.message());
  result.text.resize(static_cast<size_t>(size));
  in.read(result.text.data(), static_cast<std::streamsize>(result.text.size()));
  CALQ_CHECK(!in.bad(), "{}: read error", path);
  result.text.resize(static_cast<size_t>(in.gcount()));  // a file that shrank while read
  CALQ_CHECK(!result.text.empty(), "{}: empty text; expected at least one window of tokens", path);
  if (join == TextJoin::WikitextRows) result.text = join_wikitext_rows(result.text);
  return result;
}

}  // namespace calq::core
