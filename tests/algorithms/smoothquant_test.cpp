// SmoothQuant: the scale formula of docs/algorithms.md §5.2 on a hand-checked case, smoothing every
// norm-fed group leaves the float model's logits unchanged (Llama: RMSNorm without bias; OPT:
// LayerNorm with bias), and recipes that ask for the impossible fail before any work.
#include "algorithms/smoothquant.h"

#include <cmath>
#include <fstream>
#include <map>

#include <ATen/ATen.h>
#include <catch2/catch.hpp>

#include "algorithms/pipeline.h"
#include "algorithms/targets.h"
#include "core/error.h"
#include "core/model/model.h"
#include "core/recipe.h"
#include "tests/support/temp_dir.h"
#include "tests/support/tiny_model.h"

namespace {

using Catch::Matchers::Contains;

}  // namespace

TEST_CASE("smoothing scales follow max|X|^a / max|W|^(1-a) with the 1e-5 floors",
          "[smoothquant]") {
  calq::core::Linear a(at::tensor({1.0f, -4.0f, 0.0f, 2.0f}).reshape({2, 2}), {});
  calq::core::Linear b(at::tensor({-3.0f, 1.0f, 0.0f, 0.5f}).reshape({2, 2}), {});
  // column maxima over both linears: w = [3, 4]; activations a = [9, 0]
  const at::Tensor s = calq::algorithms::smoothing_scales(at::tensor({9.0f, 0.0f}), {&a, &b}, 0.5);
  CHECK(s[0].item<float>() == Approx(std::sqrt(9.0) / std::sqrt(3.0)));
  CHECK(s[1].item<float>() == Approx(1e-5));  // 0^0.5 / 2 floored at 1e-5
  const at::Tensor s1 = calq::algorithms::smoothing_scales(at::tensor({9.0f, 8.0f}), {&a, &b}, 1.0);
  CHECK(s1[0].item<float>() == Approx(9.0));  // alpha 1: activations only
  CHECK(s1[1].item<float>() == Approx(8.0));
}

TEST_CASE("smoothing every norm-fed group leaves the float logits unchanged", "[smoothquant]") {
  const std::string family = GENERATE(std::string("llama"), std::string("opt"), std::string("phi3"));
  calq::test::TempDir dir("calq_sq");
  const auto spec = calq::test::small_model(0, 2, family);
  calq::test::write_tiny_model(dir.path(), spec);
  auto model = calq::test::load_tiny_model(dir.path());
  const at::Tensor ids = calq::test::seeded_windows(spec, 4, 3);

  std::map<std::pair<int64_t, std::string>, at::Tensor> absmax;
  const at::Tensor before = model->forward(ids, [&](int64_t layer, std::string_view name,
                                                    const at::Tensor& x) {
    absmax[{layer, std::string(name)}] = x.reshape({-1, x.size(-1)}).abs().amax(0);
  });
  // alpha 0.85 gives scales well away from 1, so an unsmoothed linear would show.
  for (int64_t i = 0; i < model->n_layers(); ++i) {
    calq::core::DecoderLayer& layer = model->layer(i);
    for (const auto& group : calq::algorithms::norm_fed_groups(model->layer_schema(i))) {
      const at::Tensor s =
          calq::algorithms::smooth_group(layer, group, absmax.at({i, group.linears.front()}), 0.85);
      REQUIRE(s.max().item<float>() / s.min().item<float>() > 1.5f);
    }
  }
  const at::Tensor after = model->forward(ids);
  INFO(family << ": max rel diff "
              << ((after - before).abs().max() / before.abs().max()).item<double>());
  CHECK(((after - before).abs().max() / before.abs().max()).item<double>() < 1e-5);
}

TEST_CASE("invalid smoothquant recipes fail with one line before any work", "[smoothquant]") {
  calq::test::TempDir dir("calq_sq");
  calq::test::write_tiny_model(dir / "model", {});
  const auto recipe_with = [&](const std::string& passes) {
    std::ofstream(dir / "recipe.yaml") << "model: {path: model}\n"
                                          "scheme:\n  weights: {bits: 8, group_size: -1}\n"
                                          "  activations: {bits: 8}\n"
                                       << passes;
    return calq::core::load_recipe((dir / "recipe.yaml").string());
  };
  SECTION("a linear with no preceding norm") {
    // Which linears a norm feeds is the family's schema: checked against the model.
    const auto recipe = recipe_with("passes:\n  - smoothquant: {linears: [attn.o]}\n");
    auto passes = calq::algorithms::build_passes(recipe);
    auto model = calq::test::load_tiny_model(dir / "model");
    CHECK_THROWS_WITH(calq::algorithms::check_passes(passes, *model),
                      Contains("passes.0.smoothquant.linears") &&
                          Contains("attn.o has no preceding norm"));
  }
  SECTION("half of a group sharing one norm") {
    const auto recipe = recipe_with("passes:\n  - smoothquant: {linears: [attn.q, attn.k]}\n");
    auto passes = calq::algorithms::build_passes(recipe);
    auto model = calq::test::load_tiny_model(dir / "model");
    CHECK_THROWS_WITH(calq::algorithms::check_passes(passes, *model),
                      Contains("attn.q, attn.k share norm.attn with attn.v"));
  }
  SECTION("a transform after the quantizing pass") {
    const auto recipe = recipe_with("passes:\n  - gptq: {}\n  - smoothquant: {}\n");
    CHECK_THROWS_WITH(calq::algorithms::build_passes(recipe),
                      Contains("passes.1.smoothquant") && Contains("after a quantizing pass"));
  }
  SECTION("alpha outside [0, 1]") {
    const auto recipe = recipe_with("passes:\n  - smoothquant: {alpha: 1.5}\n");
    CHECK_THROWS_WITH(calq::algorithms::build_passes(recipe), Contains("passes.0.smoothquant.alpha"));
  }
}
