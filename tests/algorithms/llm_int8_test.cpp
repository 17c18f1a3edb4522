// LLM.int8(): the outlier decomposition against a case worked by hand from docs/algorithms.md §6,
// its no-outlier limit (per-token absmax int8), and the pass's recipe contract.
#include <fstream>
#include <string>

#include <ATen/ATen.h>
#include <catch2/catch.hpp>

#include "algorithms/pipeline.h"
#include "core/error.h"
#include "core/model/int8_matmul.h"
#include "core/model/model.h"
#include "core/quant/activation_quant.h"
#include "core/quant/llm_int8.h"
#include "core/recipe.h"
#include "tests/support/temp_dir.h"
#include "tests/support/tiny_model.h"

TEST_CASE("llm.int8 decomposition: a hand-worked case", "[llm_int8][algorithms]") {
  // x row 0 holds 8 ≥ τ = 6 in column 1: column 1 goes through the float matmul.
  const at::Tensor x = at::tensor({1.0f, 8.0f, 2.0f, 0.5f, 1.0f, -4.0f}).reshape({2, 3});
  const at::Tensor w = at::tensor({1.0f, 2.0f, 3.0f}).reshape({1, 3});
  calq::core::Int8Decomposition d;
  d.threshold = 6.0;
  d.float_weight = w;
  const at::Tensor y = calq::core::int8_mixed_matmul(x, w, at::Tensor(), d);
  // Row scales without the outlier element: a = (2, 4). Codes round(127·x/a), column 1 zeroed:
  // row 0 (64 [63.5 to even], 0, 127), row 1 (16, 0, −127). Float part: x[:, 1] · w[1] = (16, 2).
  const double y0 = 64.0 * 2 / 127 * 1 + 127.0 * 2 / 127 * 3 + 16.0;
  const double y1 = 16.0 * 4 / 127 * 1 - 127.0 * 4 / 127 * 3 + 2.0;
  CHECK(y[0][0].item<double>() == Approx(y0).epsilon(1e-6));
  CHECK(y[1][0].item<double>() == Approx(y1).epsilon(1e-6));
  CHECK(d.calls == 1);
  CHECK(d.columns == 3);
  CHECK(d.outlier_columns == 1);
}

TEST_CASE("llm.int8 without outliers is per-token absmax int8", "[llm_int8][algorithms]") {
  at::manual_seed(2);
  const at::Tensor x = at::randn({7, 32});  // |x| < 6 everywhere with this seed and size
  REQUIRE(x.abs().max().item<float>() < 6.0f);
  const at::Tensor w = at::randn({5, 32});
  calq::core::Int8Decomposition d;
  const at::Tensor y = calq::core::int8_mixed_matmul(x, w, at::Tensor(), d);
  const calq::core::ActQuantSpec spec{8, true, calq::core::ActGranularity::PerToken};
  const at::Tensor want = at::mm(calq::core::fake_quantize_activations(x, spec), w.t());
  CHECK(at::allclose(y, want, 1e-5, 1e-5));
  CHECK(d.outlier_columns == 0);
}

TEST_CASE("the llm_int8 pass installs the decomposition and refuses other schemes",
          "[llm_int8][algorithms]") {
  calq::test::TempDir dir("calq_int8");
  calq::test::write_tiny_model(dir / "model", {});
  const auto recipe_with = [&](const std::string& scheme, const std::string& pass) {
    std::ofstream(dir / "r.yaml") << "model: {path: model}\nscheme:\n" << scheme << "passes:\n  - " << pass << "\n";
    return calq::core::load_recipe((dir / "r.yaml").string());
  };
  const std::string int8 = "  weights: {bits: 8, group_size: -1, sym: true, grid: absmax}\n";
  const auto recipe = recipe_with(int8, "llm_int8: {threshold: 0.5}");
  auto model = calq::test::load_tiny_model(dir / "model");
  auto passes = calq::algorithms::build_passes(recipe);
  calq::algorithms::quantize_model(*model, recipe, passes, nullptr, 2);
  calq::core::Linear& q = model->layer(0).linear("attn.q");
  const auto* matmul = q.find<calq::core::Int8Matmul>();
  REQUIRE(matmul);
  CHECK(matmul->decomposition().float_weight.defined());
  at::manual_seed(4);
  model->forward(at::randint(0, 32, {2, 8}, at::kLong));
  CHECK(matmul->decomposition().calls == 1);
  CHECK(matmul->decomposition().outlier_columns > 0);  // τ = 0.5 on normalised inputs: some columns are outliers

  CHECK_THROWS_WITH(calq::algorithms::build_passes(recipe_with(
                        "  weights: {bits: 4, group_size: 128}\n", "llm_int8: {}")),
                    Catch::Contains("passes.0.llm_int8") && Catch::Contains("bits: 8"));
  CHECK_THROWS_WITH(calq::algorithms::build_passes(recipe_with(
                        int8 + "  activations: {bits: 8}\n", "llm_int8: {}")),
                    Catch::Contains("no scheme.activations"));
}
