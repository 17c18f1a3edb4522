// Pass order and output rules derived from the passes' declared traits (algorithms/pass_order.h,
// docs/architecture.md §5): each refusal is one line naming passes.<i>.<name> and the reason the
// pass declared.
#include <fstream>
#include <string>

#include <catch2/catch.hpp>

#include "algorithms/pass_order.h"
#include "algorithms/pipeline.h"
#include "core/error.h"
#include "core/recipe.h"
#include "tests/support/temp_dir.h"

namespace {

using Catch::Matchers::Contains;

/// LLM.int8()'s scheme (int8 absmax per channel, float activations), so every pass builds.
calq::core::Recipe int8_recipe(const calq::test::TempDir& dir, const std::string& passes,
                               const std::string& save = "") {
  std::ofstream(dir / "recipe.yaml")
      << "model: {path: model}\n"
         "scheme:\n  weights: {bits: 8, group_size: -1, sym: true, grid: absmax}\n"
      << save << "passes:\n"
      << passes;
  return calq::core::load_recipe((dir / "recipe.yaml").string());
}

template <typename F>
void refused(F&& run, const std::string& where, const std::string& why) {
  try {
    run();
    FAIL("accepted");
  } catch (const calq::Error& e) {
    const std::string message = e.what();
    CHECK_THAT(message, Contains(where) && Contains(why));
    CHECK(message.find('\n') == std::string::npos);
  }
}

}  // namespace

TEST_CASE("a refinement is refused after a quantizer that declares it refuses refinements",
          "[algorithms][pass_order]") {
  calq::test::TempDir dir("calq_order");
  const auto recipe = int8_recipe(dir, "  - llm_int8: {}\n  - lorc: {}\n");
  refused([&] { calq::algorithms::build_passes(recipe); }, "passes.1.lorc",
          "outlier decomposition has no weight error to compensate");
  refused([&] { calq::algorithms::build_passes(int8_recipe(dir, "  - lorc: {}\n")); },
          "passes.0.lorc", "no quantizing pass runs before it");
}

TEST_CASE("declared export and streaming limits refuse the run's outputs",
          "[algorithms][pass_order]") {
  calq::test::TempDir dir("calq_order");
  using calq::algorithms::check_pass_outputs;
  const auto packed = int8_recipe(dir, "  - llm_int8: {}\n", "save: {format: gptq, path: out}\n");
  const auto int8_passes = calq::algorithms::build_passes(packed);
  refused([&] { check_pass_outputs(packed, int8_passes, false); },
          "save.format gptq: passes.0.llm_int8", "expected save.format fake");
  const auto fake = int8_recipe(dir, "  - llm_int8: {}\n", "save: {format: fake, path: out}\n");
  CHECK_NOTHROW(check_pass_outputs(fake, calq::algorithms::build_passes(fake), true));

  const auto lorc =
      int8_recipe(dir, "  - rtn\n  - lorc: {}\n", "save: {format: fake, path: out}\n");
  const auto lorc_passes = calq::algorithms::build_passes(lorc);
  CHECK_NOTHROW(check_pass_outputs(lorc, lorc_passes, false));
  refused([&] { check_pass_outputs(lorc, lorc_passes, true); }, "passes.1.lorc: --stream",
          "writes its adapter");
}
