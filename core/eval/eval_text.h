// Reading an evaluation or calibration text exactly as the perplexity protocol wants it
// (docs/algorithms.md §10.1): a plain file as is, or WikiText's raw file rebuilt into the HF rows
// joined with "\n\n" (the string GPTQ evaluates). Every figure records which join was used.
#pragma once

#include <string>

namespace calq::core {

enum class TextJoin {
  AsIs,          ///< the file's bytes unchanged ("as-is")
  WikitextRows,  ///< lines keep their "\n", whitespace-only lines -> "", joined with "\n\n"
};

const char* text_join_name(TextJoin join);  ///< "as-is" | "wikitext-rows"
TextJoin parse_text_join(const std::string& name);  ///< throws naming the accepted values

struct EvalText {
  std::string path;
  std::string dataset;  ///< file stem, e.g. "sotu_valid"
  TextJoin join = TextJoin::AsIs;
  std::string text;
};

/// Reads `path`; throws "<path>: empty text; expected ..." for a missing or empty file.
EvalText read_eval_text(const std::string& path, TextJoin join = TextJoin::AsIs);

/// The HF wikitext rows joined with "\n\n", from the raw file's content.
std::string join_wikitext_rows(const std::string& raw);

}  // namespace calq::core
