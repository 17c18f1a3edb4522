// Floating-point formats (docs/algorithms.md §1.5, §7.4): FP8 activation fake quantization against
// hand-worked values, RTN onto the FP8/FP4/NF4 grids equal to fake_quantize_fp (power-of-two
// scales included), and the recipe keys' refusals.
#include <fstream>
#include <string>

#include <ATen/ATen.h>
#include <catch2/catch.hpp>

#include "algorithms/pipeline.h"
#include "core/checkpoint/export_checkpoint.h"
#include "core/error.h"
#include "core/model/activation_quant_extensions.h"
#include "core/model/model.h"
#include "core/quant/activation_quant.h"
#include "core/quant/float_grids.h"
#include "core/recipe.h"
#include "tests/support/temp_dir.h"
#include "tests/support/tiny_model.h"

namespace {

using Catch::Matchers::Contains;
using calq::core::ActGranularity;
using calq::core::ActQuantSpec;
using calq::core::FpFormat;

calq::core::Recipe recipe_with(const calq::test::TempDir& dir, const std::string& scheme,
                               const std::string& passes = "[]") {
  std::ofstream(dir / "r.yaml") << "model: {path: model}\nscheme:\n" << scheme << "passes: " << passes << "\n";
  return calq::core::load_recipe((dir / "r.yaml").string());
}

}  // namespace

TEST_CASE("fp8 e4m3 activations: a hand-worked case per token and per tensor", "[fp][algorithms]") {
  const at::Tensor x = at::tensor({0.3f, -1.0f, 2.0f, 0.001f, 0.0f, 0.0f}).reshape({2, 3});
  ActQuantSpec spec{8, true, ActGranularity::PerToken, FpFormat::E4M3};
  // Row 0: s = 2/448, x/s = (67.2, −224, 448); E4M3 spacing in [64, 128) is 8, so 67.2 → 64;
  // −224 = −1.75·2^7 and 448 are on the grid. Row 1: s = 0.001/448, 0.001/s = 448 exactly.
  const at::Tensor token = calq::core::fake_quantize_activations(x, spec);
  CHECK(token[0][0].item<double>() == Approx(64.0 * 2.0 / 448.0).epsilon(1e-6));
  CHECK(token[0][1].item<double>() == Approx(-1.0).epsilon(1e-6));
  CHECK(token[0][2].item<double>() == Approx(2.0).epsilon(1e-6));
  CHECK(token[1][0].item<double>() == Approx(0.001).epsilon(1e-6));
  // Per tensor, s = 2/448 for both rows: 0.001/s = 0.224 in [0.125, 0.25), spacing 2^-6, so
  // 14.336 steps → 14 → 0.21875.
  spec.granularity = ActGranularity::PerTensor;
  const at::Tensor tensor = calq::core::fake_quantize_activations(x, spec);
  CHECK(tensor[1][0].item<double>() == Approx(0.21875 * 2.0 / 448.0).epsilon(1e-6));
  CHECK(tensor[0][0].item<double>() == Approx(64.0 * 2.0 / 448.0).epsilon(1e-6));
  // A static scale saturates at ±448·s.
  const at::Tensor fixed = calq::core::fake_quantize_activations(
      x, spec, at::full({1}, 1.0 / 448.0, at::kFloat));
  CHECK(fixed[0][2].item<double>() == Approx(1.0).epsilon(1e-6));
  // E5M2: s = amax/57344, so a row's largest magnitude lands on the grid's maximum.
  ActQuantSpec e5{8, true, ActGranularity::PerToken, FpFormat::E5M2};
  CHECK(calq::core::fake_quantize_activations(x, e5)[1][0].item<double>() == Approx(0.001).epsilon(1e-6));
  const auto p = calq::core::fit_activation_params(x, ActQuantSpec{8, true, ActGranularity::PerToken, FpFormat::E4M3});
  CHECK(p.scale[0].item<double>() == Approx(2.0 / 448.0).epsilon(1e-6));
  CHECK_THROWS_WITH(calq::core::fake_quantize_activations(
                        x, ActQuantSpec{8, true, ActGranularity::PerToken, FpFormat::E2M1}),
                    Contains("expected an FP8 format"));
}

TEST_CASE("rtn onto fp8, fp4 and nf4 grids equals fake_quantize_fp", "[fp][algorithms]") {
  calq::test::TempDir dir("calq_fp_rtn");
  calq::test::write_tiny_model(dir / "model", {});
  auto reference = calq::test::load_tiny_model(dir / "model");
  struct Case {
    std::string weights;
    FpFormat format;
    int64_t group;
    bool pow2;
  };
  for (const Case& c : {Case{"{format: fp8_e4m3, group_size: -1, scale_dtype: float32}", FpFormat::E4M3, -1, false},
                        Case{"{format: fp8_e5m2, group_size: 8, scale_dtype: float32}", FpFormat::E5M2, 8, false},
                        Case{"{format: fp4_e2m1, group_size: 8, scale_dtype: float32}", FpFormat::E2M1, 8, false},
                        Case{"{format: nf4, group_size: 8, scale_dtype: float32}", FpFormat::NF4, 8, false},
                        Case{"{format: fp4_e2m1, group_size: 8, scale: pow2, scale_dtype: float32}", FpFormat::E2M1, 8, true}}) {
    INFO(c.weights);
    const auto recipe = recipe_with(dir, "  weights: " + c.weights + "\n", "[rtn]");
    auto model = calq::test::load_tiny_model(dir / "model");
    auto passes = calq::algorithms::build_passes(recipe);
    const auto result = calq::algorithms::quantize_model(*model, recipe, passes, nullptr, 2);
    for (const std::string& name : model->layer(0).linear_names()) {
      const at::Tensor want = calq::core::fake_quantize_fp(reference->layer(0).linear(name).weight,
                                                           c.format, c.group, c.pow2);
      CHECK(at::equal(model->layer(0).linear(name).weight, want));
      const auto& state = result.layers[0].at(name);
      CHECK(!state.quantized);
      REQUIRE(state.fp_quantized);
      if (c.pow2) {
        const at::Tensor e = at::log2(state.fp_quantized->scales);
        CHECK(at::equal(e, at::round(e)));
      }
    }
  }
  // Default float16 scale storage: Ŵ = values · fp16(scales), as integer codes' scales.
  const auto recipe = recipe_with(dir, "  weights: {format: fp4_e2m1, group_size: 8}\n");
  auto model = calq::test::load_tiny_model(dir / "model");
  auto passes = calq::algorithms::build_passes(recipe);
  calq::algorithms::quantize_model(*model, recipe, passes, nullptr, 2);
  const auto q = calq::core::quantize_fp(reference->layer(0).linear("mlp.up").weight, FpFormat::E2M1, 8);
  calq::core::FpQuantized rounded = q;
  rounded.scales = q.scales.to(at::kHalf).to(at::kFloat);
  CHECK(at::equal(model->layer(0).linear("mlp.up").weight, rounded.dequantize()));
}

TEST_CASE("fp8 activations install on every linear and the recipe keys refuse misuse",
          "[fp][algorithms]") {
  calq::test::TempDir dir("calq_fp_keys");
  calq::test::write_tiny_model(dir / "model", {});
  const auto recipe = recipe_with(dir, "  weights: {format: fp8_e4m3, group_size: -1}\n"
                                       "  activations: {format: fp8_e4m3, granularity: token}\n");
  auto model = calq::test::load_tiny_model(dir / "model");
  auto passes = calq::algorithms::build_passes(recipe);
  const auto result = calq::algorithms::quantize_model(*model, recipe, passes, nullptr, 2);
  const calq::core::Linear& q = model->layer(1).linear("attn.q");
  const auto* input = q.find<calq::core::InputQuant>();
  REQUIRE(input);
  REQUIRE(input->spec.fp);
  CHECK(*input->spec.fp == FpFormat::E4M3);
  CHECK(result.layers[1].at("attn.q").reports.at("activations").notes.at("activations") ==
        "fp8_e4m3 per-token dynamic");

  const auto refuses = [&](const std::string& scheme, const std::string& passes_yaml,
                           const std::string& what) {
    INFO(scheme << passes_yaml);
    CHECK_THROWS_WITH(calq::algorithms::build_passes(recipe_with(dir, scheme, passes_yaml)),
                      Contains(what));
  };
  refuses("  weights: {bits: 4, scale: pow2}\n", "[]", "pow2 applies to the floating-point formats");
  refuses("  weights: {bits: 8}\n  activations: {format: fp8_e4m3, bits: 4}\n", "[]", "expected 8");
  refuses("  weights: {bits: 8}\n  activations: {format: fp8_e5m2, sym: false}\n", "[]", "sign-magnitude");
  refuses("  weights: {format: nf4}\n", "[{gptq: {}}]", "passes.0.gptq: works on integer grids");
  refuses("  weights: {format: fp4_e2m1}\n", "[{awq: {}}]", "integer grid");
  refuses("  weights: {format: fp4_e2m1}\n  overrides: {mlp.down: {bits: 8}}\n", "[rtn]",
          "overrides.mlp.down.bits");

  // Packed checkpoints store neither FP weights nor FP activations.
  const auto fp_act = recipe_with(dir, "  weights: {bits: 8, group_size: -1, sym: true, grid: absmax}\n"
                                       "  activations: {format: fp8_e4m3}\n");
  calq::core::SaveSection save;
  save.format = calq::core::SaveFormat::CompressedTensors;
  CHECK_THROWS_WITH(calq::core::check_save_scheme(save, fp_act.scheme, "r.yaml"),
                    Contains("scheme.activations.format fp8_e4m3"));
  save.format = calq::core::SaveFormat::Gptq;
  CHECK_THROWS_WITH(calq::core::check_save_scheme(save, recipe.scheme, "r.yaml"),
                    Contains("scheme.weights.format must be int"));
}
