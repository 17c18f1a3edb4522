// Mixed precision (docs/algorithms.md §8): honest stored-bits accounting, an allocator that finds
// the exact optimum of the multiple-choice knapsack within the budget, per-layer overrides, and
// Hessian-proxy sensitivities of a real (tiny) model that the quantization then follows.
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <catch2/catch.hpp>

#include "algorithms/mixed_precision.h"
#include "algorithms/pipeline.h"
#include "algorithms/targets.h"
#include "calib/calibration_set.h"
#include "core/error.h"
#include "core/model/model.h"
#include "core/recipe.h"
#include "tests/support/temp_dir.h"
#include "tests/support/tiny_model.h"

namespace {

using calq::algorithms::LinearSensitivity;
using calq::core::MixedCandidate;
using calq::core::MixedPrecisionSection;

calq::core::Recipe load(const calq::test::TempDir& dir, const std::string& scheme_tail,
                        const std::string& passes = "[]") {
  std::ofstream(dir / "recipe.yaml") << "model: {path: model}\n"
                                        "scheme:\n  weights: {bits: 3, group_size: 16}\n"
                                     << scheme_tail << "passes: " << passes << "\n";
  return calq::core::load_recipe((dir / "recipe.yaml").string());
}

}  // namespace

TEST_CASE("stored bits count codes, float16 scales and zeros per group", "[mixed][algorithms]") {
  using calq::algorithms::stored_bits_per_weight;
  CHECK(stored_bits_per_weight({4, 128}, false, 4096) == Approx(4 + 20.0 / 128));
  CHECK(stored_bits_per_weight({3, 128}, true, 4096) == Approx(3 + 16.0 / 128));
  CHECK(stored_bits_per_weight({8, -1}, true, 256) == Approx(8 + 16.0 / 256));
}

TEST_CASE("the allocator finds the least summed sensitivity within the budget",
          "[mixed][algorithms]") {
  MixedPrecisionSection section;
  section.candidates = {MixedCandidate{2, 16}, MixedCandidate{3, 16}, MixedCandidate{4, 16}};
  std::vector<LinearSensitivity> linears;
  at::manual_seed(7);
  for (int l = 0; l < 7; ++l) {
    LinearSensitivity s;
    s.layer = l / 2;
    s.linear = l % 2 ? "mlp.down" : "attn.q";
    s.out_features = 16 * (1 + l % 3);
    s.in_features = 32;
    const double base = at::rand({1}).item<double>() * 100;
    s.proxy = {base * 16, base * 4, base};  // more bits, less loss
    linears.push_back(s);
  }
  for (const double budget : {3.2, 3.6, 4.2, 5.0}) {
    section.budget_bits = budget;
    const auto a = calq::algorithms::allocate_bits(linears, section, false);
    // Brute force over all 3^7 choices.
    double best = std::numeric_limits<double>::infinity();
    double total_n = 0;
    for (const auto& l : linears) total_n += static_cast<double>(l.out_features * l.in_features);
    for (int code = 0; code < 2187; ++code) {
      double bits = 0, loss = 0;
      int c = code;
      for (const auto& l : linears) {
        const int k = c % 3;
        c /= 3;
        bits += static_cast<double>(l.out_features * l.in_features) *
                calq::algorithms::stored_bits_per_weight(section.candidates[k], false, l.in_features);
        loss += l.proxy[k];
      }
      if (bits <= budget * total_n) best = std::min(best, loss);
    }
    INFO("budget " << budget);
    CHECK(a.avg_bits <= budget + 1e-12);
    CHECK(a.proxy_total == Approx(best).epsilon(1e-3));
    REQUIRE(a.overrides.size() == linears.size());
    CHECK(a.overrides[3].pattern == "layers.1.mlp.down");
  }
  section.budget_bits = 3.0;  // below 2 + 18/16 bits
  CHECK_THROWS_WITH(calq::algorithms::allocate_bits(linears, section, false),
                    Catch::Matchers::Contains("scheme.mixed_precision.budget_bits"));
}

TEST_CASE("overrides may name one layer's linear", "[mixed][algorithms]") {
  calq::test::TempDir dir("calq_mixed");
  const auto recipe = load(dir, "  overrides: {\"layers.1.mlp.down\": {bits: 4}, \"attn.o\": {bits: 2}}\n");
  CHECK(calq::algorithms::resolve_target(recipe.scheme, "mlp.down", 0)->spec.bits == 3);
  CHECK(calq::algorithms::resolve_target(recipe.scheme, "mlp.down", 1)->spec.bits == 4);
  CHECK(calq::algorithms::resolve_target(recipe.scheme, "mlp.down")->spec.bits == 3);
  CHECK(calq::algorithms::resolve_target(recipe.scheme, "attn.o", 1)->spec.bits == 2);
}

TEST_CASE("mixed_precision recipes are checked", "[mixed][recipe]") {
  calq::test::TempDir dir("calq_mixed");
  CHECK_THROWS_WITH(load(dir, "  mixed_precision: {budget_bits: 3.5, candidates: [{bits: 3}]}\n"),
                    Catch::Matchers::Contains("scheme.mixed_precision.candidates") &&
                        Catch::Matchers::Contains("at least two"));
  const auto r = load(dir, "  mixed_precision: {budget_bits: 3.5, candidates: [{bits: 3}, {bits: 4, group_size: 32}]}\n");
  REQUIRE(r.scheme.mixed_precision);
  CHECK(r.scheme.mixed_precision->candidates[0].group_size == 16);  // the scheme's
  CHECK(r.scheme.mixed_precision->candidates[1].group_size == 32);
}

TEST_CASE("Hessian sensitivities of a model drive the bits each linear is quantized to",
          "[mixed][algorithms]") {
  calq::test::TempDir dir("calq_mixed");
  const auto spec = calq::test::small_model(21);
  calq::test::write_tiny_model(dir / "model", spec);
  const auto recipe = load(
      dir, "  mixed_precision: {budget_bits: 4.7, candidates: [{bits: 3}, {bits: 4}]}\n",
      "[gptq: {}]");
  auto model = calq::test::load_tiny_model(dir / "model");
  calq::calib::CalibrationSet calibration;
  calibration.windows = calq::test::seeded_windows(spec, 8);
  const auto sens = calq::algorithms::hessian_sensitivity(*model, recipe, calibration.windows, 2);
  REQUIRE(sens.size() == 2 * 7);
  for (const auto& s : sens) {
    INFO(s.layer << " " << s.linear);
    CHECK(s.proxy[0] > s.proxy[1]);  // 3 bits lose more than 4
    CHECK(s.proxy[1] > 0);
  }
  const auto allocation =
      calq::algorithms::allocate_bits(sens, *recipe.scheme.mixed_precision, false);
  CHECK(allocation.avg_bits <= 4.7);  // W3 g16 = 4.1875, W4 g16 = 5.25 stored bits
  int at4 = 0;
  for (size_t c : allocation.choice) at4 += c == 1;
  CHECK(at4 > 0);
  CHECK(at4 < static_cast<int>(sens.size()));

  auto passes = calq::algorithms::build_passes(recipe);
  const auto result = calq::algorithms::quantize_model(
      *model, calq::algorithms::with_allocation(recipe, allocation), passes, &calibration, 2);
  for (size_t l = 0; l < sens.size(); ++l) {
    const auto& q = result.layers.at(static_cast<size_t>(sens[l].layer)).at(sens[l].linear).quantized;
    REQUIRE(q);
    CHECK(q->bits == (allocation.choice[l] == 1 ? 4 : 3));
  }
}
