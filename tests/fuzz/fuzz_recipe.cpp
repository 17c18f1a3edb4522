// Fuzzes parse_recipe (core/recipe.cpp, core/recipe_sections.cpp): recipe YAML, all sections
// validated. Relative paths resolve against /fuzz; nothing is opened.
#include <string>

#include "core/recipe.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  calq::fuzz::expect_only_calq_errors([&] {
    calq::core::parse_recipe(std::string(calq::fuzz::as_text(data, size)), "/fuzz/recipe.yaml");
  });
  return 0;
}
