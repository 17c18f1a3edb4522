// The few Python string operations lm-evaluation-harness's task code applies to documents,
// reproduced on UTF-8 so calq's task figures are lm-eval's (docs/tasks.md): str.isspace's set,
// str.rstrip(), len(re.split(r"\s+", s)), len(s) in code points, str.capitalize(), and the two
// text clean-ups of the tasks calq ships definitions for (HellaSwag's preprocess, WikiText's
// detokenizer).
#pragma once

#include <cstdint>
#include <string>

namespace calq::core::python_text {

/// Python's str.isspace() for one code point (Unicode whitespace, as re's \s on str).
bool is_space(uint32_t code_point);

/// len(s.rstrip()) in bytes.
size_t rstripped_size(const std::string& s);

/// s.strip().
std::string strip(const std::string& s);

/// len(re.split(r"\s+", s)): 1 + the number of maximal whitespace runs.
int64_t split_whitespace_count(const std::string& s);

/// len(s): code points (a malformed byte counts as one, as Python's surrogateescape would).
int64_t code_points(const std::string& s);

/// s.capitalize(): the first character upper case, the rest lower case (ASCII letters; other
/// characters are kept as they are — a documented difference for non-ASCII letters).
std::string capitalize(const std::string& s);

/// lm_eval/tasks/hellaswag/utils.py preprocess: strip, " [title]" → ". ", drop "[...]" spans,
/// "  " → " ".
std::string hellaswag_preprocess(const std::string& s);

/// lm_eval/tasks/wikitext/preprocess_wikitext.py wikitext_detokenizer, rule for rule.
std::string wikitext_detokenize(const std::string& s);

}  // namespace calq::core::python_text
