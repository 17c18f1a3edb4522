// Tests for core/quant (grid.h, quantizer.h, quantized_tensor.h, activation_quant.h): hand-computed
// cases for every grid of docs/algorithms.md §1.1, ties, clamps, groups, per-tensor, mse ties,
// activations and bad specs. Expected numbers are worked out in the comments, not by the code under
// test; scales are chosen as powers of two (0.25, 0.5, 1) wherever possible so x/s is exact and
// the ties are real ties. The loop-based oracle lives in quantizer_oracle_test.cpp.
#include "core/quant/quantizer.h"

#include <cmath>
#include <cstdint>
#include <vector>

#include <ATen/ATen.h>
#include <catch2/catch.hpp>

#include "core/error.h"
#include "core/quant/activation_quant.h"
#include "core/quant/grid.h"
#include "core/quant/quantized_tensor.h"

using namespace calq;
using core::Grid;

namespace {

at::Tensor mat(const std::vector<float>& values, int64_t rows) {
  return at::tensor(values).reshape({rows, -1});
}

std::vector<int32_t> ints(const at::Tensor& t) {
  const at::Tensor c = t.to(at::kInt).contiguous().reshape(-1);
  return std::vector<int32_t>(c.data_ptr<int32_t>(), c.data_ptr<int32_t>() + c.numel());
}

std::vector<float> floats(const at::Tensor& t) {
  const at::Tensor c = t.to(at::kFloat).contiguous().reshape(-1);
  return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}

// One row through fit_params + quantize_codes + dequantize (per-channel spec).
struct RowResult {
  float scale;
  int32_t zero;
  std::vector<int32_t> codes;
  std::vector<float> deq;
};

RowResult quantize_row(const std::vector<float>& row, Grid grid, int bits) {
  const core::QuantSpec spec = core::weight_spec(bits, grid, -1);
  const at::Tensor x = mat(row, 1);
  const core::QuantParams p = core::fit_params(x, spec);
  const at::Tensor codes = core::quantize_codes(x, p.scale, p.zero, spec);
  return {p.scale.item<float>(), p.zero.item<int32_t>(), ints(codes),
          floats(core::dequantize(codes, p.scale, p.zero))};
}

}  // namespace

TEST_CASE("grid names round-trip and unknown names list the valid ones", "[core][quant]") {
  for (Grid g :
       {Grid::GptqAsym, Grid::GptqSym, Grid::CtSym, Grid::CtAsym, Grid::AwqAsym, Grid::Absmax})
    CHECK(core::parse_grid(core::grid_name(g)) == g);
  CHECK(core::grid_name(Grid::GptqSym) == "gptq_sym");
  REQUIRE_THROWS_AS(core::parse_grid("ct"), Error);
  REQUIRE_THROWS_WITH(core::parse_grid("int4"),
                      Catch::Contains("\"int4\"") && Catch::Contains("gptq_asym, gptq_sym"));
}

TEST_CASE("grid families resolve with sym and reject awq sym / absmax asym", "[core][quant]") {
  CHECK(core::resolve_grid("gptq", false) == Grid::GptqAsym);
  CHECK(core::resolve_grid("gptq", true) == Grid::GptqSym);
  CHECK(core::resolve_grid("ct", true) == Grid::CtSym);
  CHECK(core::resolve_grid("ct", false) == Grid::CtAsym);
  CHECK(core::resolve_grid("awq", false) == Grid::AwqAsym);
  CHECK(core::resolve_grid("absmax", true) == Grid::Absmax);
  REQUIRE_THROWS_WITH(core::resolve_grid("awq", true), Catch::Contains("asymmetric"));
  REQUIRE_THROWS_WITH(core::resolve_grid("absmax", false), Catch::Contains("symmetric"));
  REQUIRE_THROWS_WITH(core::resolve_grid("hqq", true), Catch::Contains("gptq, ct, awq, absmax"));
}

TEST_CASE("code ranges follow each grid's convention", "[core][quant]") {
  auto range = [](Grid g, int b) {
    const core::CodeRange r = core::code_range(g, b);
    return std::vector<int32_t>{r.qmin, r.qmax};
  };
  CHECK(range(Grid::GptqAsym, 4) == std::vector<int32_t>{0, 15});
  CHECK(range(Grid::GptqSym, 3) == std::vector<int32_t>{0, 7});
  CHECK(range(Grid::AwqAsym, 8) == std::vector<int32_t>{0, 255});
  CHECK(range(Grid::CtSym, 4) == std::vector<int32_t>{-8, 7});
  CHECK(range(Grid::CtAsym, 8) == std::vector<int32_t>{-128, 127});
  CHECK(range(Grid::Absmax, 8) == std::vector<int32_t>{-127, 127});
  CHECK(range(Grid::Absmax, 2) == std::vector<int32_t>{-1, 1});
}

TEST_CASE("bad specs throw with a clear message", "[core][quant]") {
  REQUIRE_THROWS_WITH(core::weight_spec(5, Grid::GptqAsym, 128),
                      Catch::Contains("bits: 5") && Catch::Contains("2, 3, 4 or 8"));
  REQUIRE_THROWS_WITH(core::weight_spec(4, Grid::GptqAsym, 0),
                      Catch::Contains("group_size: 0") && Catch::Contains("-1 for per-channel"));
  REQUIRE_THROWS_AS(core::weight_spec(4, Grid::GptqAsym, -2), Error);
  core::QuantSpec spec;
  spec.granularity = core::Granularity::PerGroup;
  spec.group_size = -1;
  REQUIRE_THROWS_AS(core::validate(spec), Error);
  spec.granularity = core::Granularity::PerChannel;
  spec.group_size = 128;
  REQUIRE_THROWS_WITH(core::validate(spec), Catch::Contains("per-channel"));
  REQUIRE_THROWS_WITH(
      core::quantize_weight(mat({1.0f, NAN}, 1), core::weight_spec(4, Grid::GptqAsym, -1)),
      Catch::Contains("NaN"));
  CHECK(core::describe(core::weight_spec(4, Grid::GptqAsym, 128)) == "gptq_asym w4 g128");
}

TEST_CASE("gptq_asym rounds half to even at exact ties, zero point included", "[core][quant]") {
  // lo = -1.5, hi = 2.25: s = 3.75/15 = 0.25, z = round(1.5/0.25) = 6. x/s: -6, -2.5, 0.5, 1.5,
  // 2.5, 3.5, 9 -> round half even: -6, -2, 0, 2, 2, 4, 9 -> +6: 0, 4, 6, 8, 8, 10, 15.
  // (std::round would give 3, 7, 8, 9, 10 for the ties.)
  RowResult r =
      quantize_row({-1.5f, -0.625f, 0.125f, 0.375f, 0.625f, 0.875f, 2.25f}, Grid::GptqAsym, 4);
  CHECK(r.scale == 0.25f);
  CHECK(r.zero == 6);
  CHECK(r.codes == std::vector<int32_t>{0, 4, 6, 8, 8, 10, 15});
  CHECK(r.deq == std::vector<float>{-1.5f, -0.5f, 0.0f, 0.5f, 0.5f, 1.0f, 2.25f});
  // lo = -0.625, hi = 3.125: s = 0.25, -lo/s = 2.5 -> z = 2 (not 3). x/s = -2.5 -> -2 -> 0;
  // 12.5 -> 12 -> 14.
  r = quantize_row({-0.625f, 3.125f}, Grid::GptqAsym, 4);
  CHECK(r.zero == 2);
  CHECK(r.codes == std::vector<int32_t>{0, 14});
  CHECK(r.deq == std::vector<float>{-0.5f, 3.0f});
}

TEST_CASE("x / s is a true division, not a multiply by 1/s", "[core][quant]") {
  // Row [0, 0.005, 0.05]: lo = 0, hi = 0.05f, s = 0.05f/15 = 0.00333333341f, z = 0.
  // 0.005f / s = 1.49999988f -> 1, while 0.005f * (1/s) = 0.005f * 300 = 1.5f would give 2.
  const RowResult r = quantize_row({0.0f, 0.005f, 0.05f}, Grid::GptqAsym, 4);
  CHECK(r.scale == 0.05f / 15.0f);
  CHECK(r.codes == std::vector<int32_t>{0, 1, 15});
}

TEST_CASE("gptq_sym clamps +amax to the top code and keeps lo = 0 without negatives",
          "[core][quant]") {
  // amax = 1.875, lo := -1.875: s = 3.75/15 = 0.25, z = 8. x/s: -7.5 -> -8, -4, 2.5 -> 2,
  // 7.5 -> 8; +8: 0, 4, 10, 16 -> clamped 15. Dequant 0.25 * (15 - 8) = 1.75 = 0.933 * amax,
  // and the bottom reaches -2.0 = -1.067 * amax.
  RowResult r = quantize_row({-1.875f, -1.0f, 0.625f, 1.875f}, Grid::GptqSym, 4);
  CHECK(r.scale == 0.25f);
  CHECK(r.zero == 8);
  CHECK(r.codes == std::vector<int32_t>{0, 4, 10, 15});
  CHECK(r.deq == std::vector<float>{-2.0f, -1.0f, 0.5f, 1.75f});
  // No negative value: lo stays 0, s = 3.75/15 = 0.25, z = 8: codes 10, 12, 15 (23 clamped), so
  // everything above 7s = 1.75 clips.
  r = quantize_row({0.5f, 1.0f, 3.75f}, Grid::GptqSym, 4);
  CHECK(r.scale == 0.25f);
  CHECK(r.codes == std::vector<int32_t>{10, 12, 15});
  CHECK(r.deq == std::vector<float>{0.5f, 1.0f, 1.75f});
}

TEST_CASE("an all-zero row gets the reference fallbacks of every grid", "[core][quant]") {
  const std::vector<float> zeros = {0.0f, 0.0f, 0.0f};
  // gptq: lo, hi = -1, +1: s = 2/15 = 0.13333334f; 1/s = 7.49999952f rounds to 7 (not 8).
  RowResult r = quantize_row(zeros, Grid::GptqAsym, 4);
  CHECK(r.scale == 2.0f / 15.0f);
  CHECK(r.zero == 7);
  CHECK(r.codes == std::vector<int32_t>{7, 7, 7});
  r = quantize_row(zeros, Grid::GptqSym, 4);
  CHECK(r.scale == 2.0f / 15.0f);
  CHECK(r.zero == 8);
  // ct: s = 0 clamped to fp32 eps; asym zero = round(clamp(-8 - 0/eps)) = -8.
  r = quantize_row(zeros, Grid::CtSym, 4);
  CHECK(r.scale == 1.1920928955078125e-07f);
  CHECK(r.zero == 0);
  r = quantize_row(zeros, Grid::CtAsym, 4);
  CHECK(r.scale == 1.1920928955078125e-07f);
  CHECK(r.zero == -8);
  CHECK(r.codes == std::vector<int32_t>{-8, -8, -8});
  // awq: max(0, 1e-5)/15; absmax: max(0, 1e-5)/7.
  r = quantize_row(zeros, Grid::AwqAsym, 4);
  CHECK(r.scale == 1e-5f / 15.0f);
  CHECK(r.zero == 0);
  r = quantize_row(zeros, Grid::Absmax, 4);
  CHECK(r.scale == 1e-5f / 7.0f);
  for (Grid g :
       {Grid::GptqAsym, Grid::GptqSym, Grid::CtSym, Grid::CtAsym, Grid::AwqAsym, Grid::Absmax})
    CHECK(quantize_row(zeros, g, 4).deq == zeros);
}

TEST_CASE("ct_sym uses the step amax/7.5 and ct_asym a signed zero added before rounding",
          "[core][quant]") {
  // amax = 1.875: s = 1.875/7.5 = 0.25, z = 0, codes in [-8, 7]. x/s: -7.5 -> -8, -3, 2.5 -> 2,
  // 7.5 -> clamp 7 -> 7. Same grid as gptq_sym shifted by 8.
  RowResult r = quantize_row({-1.875f, -0.75f, 0.625f, 1.875f}, Grid::CtSym, 4);
  CHECK(r.scale == 0.25f);
  CHECK(r.codes == std::vector<int32_t>{-8, -3, 2, 7});
  CHECK(r.deq == std::vector<float>{-2.0f, -0.75f, 0.5f, 1.75f});
  CHECK(quantize_row({-1.875f, -0.75f, 0.625f, 1.875f}, Grid::GptqSym, 4).codes ==
        std::vector<int32_t>{0, 5, 10, 15});
  CHECK(quantize_row({-1.0f, 1.0f}, Grid::CtSym, 4).scale == 1.0f / 7.5f);
  // ct_sym on an all-positive row takes amax from both ends (no gptq_sym quirk): s = 0.25.
  r = quantize_row({0.5f, 1.0f, 1.875f}, Grid::CtSym, 4);
  CHECK(r.codes == std::vector<int32_t>{2, 4, 7});
  // ct_asym: lo = -0.75, hi = 3: s = 3.75/15 = 0.25, z = round(clamp(-8 - (-3))) = -5 (odd).
  // 0.375/s = 1.5: ct rounds 1.5 - 5 = -3.5 -> -4 (round-then-add would give 2 - 5 = -3).
  r = quantize_row({-0.75f, 0.375f, 3.0f}, Grid::CtAsym, 4);
  CHECK(r.scale == 0.25f);
  CHECK(r.zero == -5);
  CHECK(r.codes == std::vector<int32_t>{-8, -4, 7});
  CHECK(r.deq == std::vector<float>{-0.75f, 0.25f, 3.0f});
}

TEST_CASE("awq_asym uses the raw range and clamps the zero of an all-positive group to 0",
          "[core][quant]") {
  // min 0.5, max 4.25: s = 3.75/15 = 0.25, z = clamp(-round(2), 0, 15) = 0. codes round(x/s):
  // 2, 5, 17 -> clamp 15: the top clips to 3.75 (gptq_asym would stretch the range down to 0).
  RowResult r = quantize_row({0.5f, 1.25f, 4.25f}, Grid::AwqAsym, 4);
  CHECK(r.scale == 0.25f);
  CHECK(r.zero == 0);
  CHECK(r.codes == std::vector<int32_t>{2, 5, 15});
  CHECK(r.deq == std::vector<float>{0.5f, 1.25f, 3.75f});
  // min -1, max 2.75: s = 0.25, z = -round(-4) = 4; 0.3/0.25 = 1.2 -> 1 -> 5; 11 -> 15.
  r = quantize_row({-1.0f, 0.3f, 2.75f}, Grid::AwqAsym, 4);
  CHECK(r.zero == 4);
  CHECK(r.codes == std::vector<int32_t>{0, 5, 15});
}

TEST_CASE("absmax divides by 127 and ct_sym by 127.5 at 8 bits", "[core][quant]") {
  // absmax: amax 127 -> s = 1; 63.5 -> 64 (half even), no clamp needed.
  RowResult r = quantize_row({-127.0f, 63.5f, 127.0f}, Grid::Absmax, 8);
  CHECK(r.scale == 1.0f);
  CHECK(r.codes == std::vector<int32_t>{-127, 64, 127});
  // ct_sym: amax 127.5 -> s = 1; -127.5 -> -128 (even), 127.5 -> clamp 127.
  r = quantize_row({-127.5f, 63.5f, 127.5f}, Grid::CtSym, 8);
  CHECK(r.scale == 1.0f);
  CHECK(r.codes == std::vector<int32_t>{-128, 64, 127});
  // Same data, steps differ by one part in 255.
  CHECK(quantize_row({-1.0f, 1.0f}, Grid::Absmax, 8).scale == 1.0f / 127.0f);
  CHECK(quantize_row({-1.0f, 1.0f}, Grid::CtSym, 8).scale == 1.0f / 127.5f);
}

TEST_CASE("2-, 3- and 8-bit grids clamp and round on their own ranges", "[core][quant]") {
  // gptq_asym 3 bits: s = 3.5/7 = 0.5, z = round(3.5) = 4. x/s: -3.5 -> -4 -> 0; 0.5 -> 0 -> 4;
  // 3.5 -> 4 -> 8 -> clamp 7.
  RowResult r = quantize_row({-1.75f, 0.25f, 1.75f}, Grid::GptqAsym, 3);
  CHECK(r.scale == 0.5f);
  CHECK(r.zero == 4);
  CHECK(r.codes == std::vector<int32_t>{0, 4, 7});
  // gptq_sym 2 bits: s = 3/3 = 1, z = 2. -1.5 -> -2 -> 0; 0.75 -> 1 -> 3; 1.5 -> 2 -> 4 -> 3.
  r = quantize_row({-1.5f, 0.75f, 1.5f}, Grid::GptqSym, 2);
  CHECK(r.scale == 1.0f);
  CHECK(r.zero == 2);
  CHECK(r.codes == std::vector<int32_t>{0, 3, 3});
  // ct_sym 2 bits: s = 1.5/1.5 = 1, range [-2, 1].
  CHECK(quantize_row({-1.5f, 0.75f, 1.5f}, Grid::CtSym, 2).codes == std::vector<int32_t>{-2, 1, 1});
  // absmax 2 bits: s = 1.5/1; 0.75/1.5 = 0.5 -> 0.
  CHECK(quantize_row({-1.5f, 0.75f, 1.5f}, Grid::Absmax, 2).codes ==
        std::vector<int32_t>{-1, 0, 1});
  // ct_sym 3 bits: s = 3.5/3.5 = 1: -3.5 -> -4, 1.5 -> 2, 2.5 -> 2, 3.5 -> clamp 3.
  CHECK(quantize_row({-3.5f, 1.5f, 2.5f, 3.5f}, Grid::CtSym, 3).codes ==
        std::vector<int32_t>{-4, 2, 2, 3});
  // gptq_asym 8 bits on [-1, 1]: s = 2/255 = 0.00784313772f, 1/s = 127.499992f -> z = 127.
  r = quantize_row({-1.0f, 1.0f}, Grid::GptqAsym, 8);
  CHECK(r.scale == 2.0f / 255.0f);
  CHECK(r.zero == 127);
}

TEST_CASE("groups along the input dimension with a shorter last group", "[core][quant]") {
  // Row [-1.5, 2.25 | 0, 3.75 | -0.75], g = 2, gptq_asym 4-bit:
  // group 0: s = 0.25, z = 6 -> codes 0, 15; group 1: lo = 0, s = 0.25, z = 0 -> 0, 15;
  // group 2 (one column): lo = -0.75, hi = 0, s = 0.75/15 = 0.05f, z = round(15) = 15 -> 0.
  const core::QuantizedTensor q = core::quantize_weight(mat({-1.5f, 2.25f, 0.0f, 3.75f, -0.75f}, 1),
                                                        core::weight_spec(4, Grid::GptqAsym, 2));
  CHECK(q.n_groups() == 3);
  CHECK(q.short_last_group());
  CHECK(floats(q.scales) == std::vector<float>{0.25f, 0.25f, 0.75f / 15.0f});
  CHECK(ints(q.zeros) == std::vector<int32_t>{6, 0, 15});
  CHECK(ints(q.g_idx) == std::vector<int32_t>{0, 0, 1, 1, 2});
  CHECK(ints(q.codes) == std::vector<int32_t>{0, 15, 0, 15, 0});
  CHECK(floats(q.dequantize()) == std::vector<float>{-1.5f, 2.25f, 0.0f, 3.75f, -0.75f});

  // in = 172, g = 32: 5 full groups + one of 12 columns; each group's params equal a fit of
  // exactly its columns (as gptq.py's W[:, j : j + g]).
  at::Generator gen = at::detail::createCPUGenerator(1234);
  const at::Tensor w = at::randn({3, 172}, gen);
  const core::QuantSpec spec = core::weight_spec(4, Grid::GptqSym, 32);
  const core::QuantizedTensor big = core::quantize_weight(w, spec);
  REQUIRE(big.n_groups() == 6);
  CHECK(big.short_last_group());
  CHECK(big.g_idx[31].item<int32_t>() == 0);
  CHECK(big.g_idx[32].item<int32_t>() == 1);
  CHECK(big.g_idx[160].item<int32_t>() == 5);
  CHECK(big.g_idx[171].item<int32_t>() == 5);
  for (int64_t k = 0; k < 6; ++k) {
    const core::QuantParams p = core::fit_params(w.narrow(1, k * 32, k == 5 ? 12 : 32), spec);
    CHECK(at::equal(big.scales.select(1, k), p.scale));
    CHECK(at::equal(big.zeros.select(1, k), p.zero));
  }
  CHECK_FALSE(core::quantize_weight(w, core::weight_spec(4, Grid::GptqSym, 43)).short_last_group());
  CHECK_FALSE(core::quantize_weight(w, core::weight_spec(4, Grid::GptqSym, -1)).short_last_group());
}

TEST_CASE("per-tensor quantization uses one scale for the whole weight", "[core][quant]") {
  // Whole tensor: lo = -1.5, hi = 2.25 -> s = 0.25, z = 6 for both rows (row 1 alone would have
  // lo = 0, s = 0.15). codes: -6+6 = 0, 2+6 = 8; 9+6 = 15, 4+6 = 10.
  core::QuantSpec spec = core::weight_spec(4, Grid::GptqAsym, -1);
  spec.granularity = core::Granularity::PerTensor;
  const core::QuantizedTensor q = core::quantize_weight(mat({-1.5f, 0.5f, 2.25f, 1.0f}, 2), spec);
  CHECK(floats(q.scales) == std::vector<float>{0.25f, 0.25f});
  CHECK(ints(q.zeros) == std::vector<int32_t>{6, 6});
  CHECK(ints(q.codes) == std::vector<int32_t>{0, 8, 15, 10});
  CHECK(ints(q.g_idx) == std::vector<int32_t>{0, 0});
}

TEST_CASE("dequantize gathers through a non-monotonic g_idx and rounds scales to fp16",
          "[core][quant]") {
  core::QuantizedTensor q;
  q.bits = 4;
  q.grid = Grid::GptqAsym;
  q.granularity = core::Granularity::PerGroup;
  q.group_size = 2;
  q.codes = at::tensor(std::vector<int32_t>{4, 4, 5, 1}).reshape({1, 4});
  q.scales = mat({0.5f, 2.0f}, 1);
  q.zeros = at::tensor(std::vector<int32_t>{1, 3}).reshape({1, 2});
  q.g_idx = at::tensor(std::vector<int32_t>{1, 0, 1, 0});  // act-order style
  // col 0: 2*(4-3) = 2; col 1: 0.5*(4-1) = 1.5; col 2: 2*(5-3) = 4; col 3: 0.5*(1-1) = 0.
  CHECK(floats(q.dequantize()) == std::vector<float>{2.0f, 1.5f, 4.0f, 0.0f});

  // Row [-1, 0, 2] gptq_asym: s = 3/15 = 0.2f, z = 5, x = 2 -> code 15. fp16(0.2) =
  // 0.199951171875, so the exported model dequantizes 2 to 0.199951171875 * 10.
  core::QuantSpec spec = core::weight_spec(4, Grid::GptqAsym, -1);
  spec.scale_dtype = at::kHalf;
  const core::QuantizedTensor r = core::quantize_weight(mat({-1.0f, 0.0f, 2.0f}, 1), spec);
  CHECK(ints(r.codes) == std::vector<int32_t>{0, 5, 15});
  CHECK(r.dequantize()[0][2].item<float>() == 0.199951171875f * 10.0f);
  CHECK(r.dequantize(at::kFloat)[0][2].item<float>() == 0.2f * 10.0f);
  REQUIRE_THROWS_WITH(core::round_scales(mat({1e5f}, 1), at::kHalf), Catch::Contains("overflows"));
}

TEST_CASE("mse range search keeps p = 1 on ties and never does worse than min/max",
          "[core][quant]") {
  // All-zero row: every candidate has error 0; the strict < keeps p = 1, so s = 2/15 exactly
  // (a <= would end on p = 0.21).
  for (Grid g : {Grid::GptqAsym, Grid::GptqSym}) {
    core::QuantSpec spec = core::weight_spec(4, g, -1);
    spec.range = core::RangeSearch::Mse;
    CHECK(core::fit_params(at::zeros({2, 8}), spec).scale[0].item<float>() == 2.0f / 15.0f);
  }
  // A row already on the p = 1 grid (error 0) keeps its scale.
  core::QuantSpec spec = core::weight_spec(4, Grid::GptqAsym, -1);
  spec.range = core::RangeSearch::Mse;
  CHECK(core::fit_params(mat({-1.5f, -0.5f, 0.25f, 2.25f}, 1), spec).scale.item<float>() == 0.25f);
  // One outlier among 1023 small values: the |err|^2.4 of the many small values outweighs
  // clipping the outlier, so a shrunk range (smaller scale) wins.
  at::Generator gen = at::detail::createCPUGenerator(7);
  const at::Tensor x = at::cat({0.1 * at::randn({1, 1023}, gen), at::ones({1, 1})}, 1);
  const float mse_scale = core::fit_params(x, spec).scale.item<float>();
  spec.range = core::RangeSearch::MinMax;
  CHECK(mse_scale < core::fit_params(x, spec).scale.item<float>());
}

TEST_CASE("activations: per-token vs per-tensor absmax, static scale, asym", "[core][quant]") {
  // Rows [127, -63.5, 0.5] and [254, 127, -1], 8-bit absmax (s = amax/127).
  const at::Tensor x = mat({127.0f, -63.5f, 0.5f, 254.0f, 127.0f, -1.0f}, 2);
  core::ActQuantSpec spec;  // 8 bits, sym, per token
  // Per token: s = 1 -> 127, -64 (half even), 0; s = 2 -> 127, 63.5 -> 64, -0.5 -> 0.
  CHECK(floats(core::fake_quantize_activations(x, spec)) ==
        std::vector<float>{127.0f, -64.0f, 0.0f, 254.0f, 128.0f, 0.0f});
  // Per tensor: s = 254/127 = 2: row 0: 63.5 -> 64 -> 128, -31.75 -> -32 -> -64, 0.25 -> 0.
  spec.granularity = core::ActGranularity::PerTensor;
  CHECK(floats(core::fake_quantize_activations(x, spec)) ==
        std::vector<float>{128.0f, -64.0f, 0.0f, 254.0f, 128.0f, 0.0f});
  // Static s = 1: 254 clamps to 127.
  CHECK(floats(core::fake_quantize_activations(x, spec, at::ones({}))) ==
        std::vector<float>{127.0f, -64.0f, 0.0f, 127.0f, 127.0f, -1.0f});
  spec.granularity = core::ActGranularity::PerToken;
  REQUIRE_THROWS_WITH(core::fake_quantize_activations(x, spec, at::ones({})),
                      Catch::Contains("per-tensor"));
  // Asym per token: [-1, 100, 254]: s = 255/255 = 1, z = 1 -> codes 0, 101, 255.
  spec.sym = false;
  CHECK(floats(core::fake_quantize_activations(mat({-1.0f, 100.0f, 254.0f}, 1), spec)) ==
        std::vector<float>{-1.0f, 100.0f, 254.0f});
  // Shape [batch, tokens, in] and dtype are kept; params are per token.
  spec.sym = true;
  const at::Tensor x3 = x.reshape({1, 2, 3}).to(at::kBFloat16);
  const at::Tensor y3 = core::fake_quantize_activations(x3, spec);
  CHECK(y3.sizes() == x3.sizes());
  CHECK(y3.scalar_type() == at::kBFloat16);
  CHECK(core::fit_activation_params(x3, spec).scale.sizes() == at::IntArrayRef({1, 2}));
}
