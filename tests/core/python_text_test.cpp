// core/eval/python_text against the outputs of lm-eval-harness 0.4.13's own functions on the same
// inputs (expected strings produced by running them in Python): WikiText's detokenizer,
// HellaSwag's preprocess, len(re.split(r"\s+", s)), str.capitalize and str.rstrip.
#include <catch2/catch.hpp>

#include "core/eval/python_text.h"

namespace pt = calq::core::python_text;

TEST_CASE("wikitext_detokenize equals lm-eval's wikitext_detokenizer", "[tasks]") {
  CHECK(pt::wikitext_detokenize(" = = Early life = = \n He was born in 1 @,@ 000 ( see \" the  "
                                "note \" ) and it 's 3 @.@ 5 km . /' 5/ ") ==
        " == Early life ==\nHe was born in 1,000 (see \"the  note\") and it's 3.5 km. /'[0-9]/ ");
  CHECK(pt::wikitext_detokenize("a ( b ( c ) d ) e [ x ] { y } ' q ' \" unclosed") ==
        "a (b ( c) d ) e [x] {y} 'q' \" unclosed");
  CHECK(pt::wikitext_detokenize(" N fifty N ") == " 1 fifty 1 ");
}

TEST_CASE("hellaswag_preprocess equals lm-eval's preprocess", "[tasks]") {
  CHECK(pt::hellaswag_preprocess("  Making tea [title] Boil water. [header] Steps  go  here.  ") ==
        "Making tea. Boil water. Steps go here.");
  CHECK(pt::hellaswag_preprocess("a [b\nc] d") == "a [b\nc] d");  // . stops at a line break
}

TEST_CASE("Python string operations on UTF-8", "[tasks]") {
  CHECK(pt::split_whitespace_count("") == 1);
  CHECK(pt::split_whitespace_count(" a  b\t\nc ") == 5);
  CHECK(pt::split_whitespace_count("a\xC2\xA0" "b\xE3\x80\x80" "c") == 3);  // U+00A0, U+3000
  CHECK(pt::split_whitespace_count("x") == 1);
  CHECK(pt::capitalize("hELLO wORLD") == "Hello world");
  const std::string s = "ab \xE2\x80\x83\n";  // U+2003 EM SPACE
  CHECK(pt::rstripped_size(s) == 2);
  CHECK(pt::strip("  a b \n") == "a b");
  CHECK(pt::code_points("caf\xC3\xA9") == 4);
}
