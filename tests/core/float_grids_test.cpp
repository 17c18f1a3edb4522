// Tests for core/quant/float_grids: FP8 E4M3/E5M2, FP4 E2M1 and NF4 rounding on hand-picked
// inputs (docs/algorithms.md §1.5) — exact ties between neighbours (to the even code), saturation,
// subnormals, NaN — and the scaled per-channel / per-group fake quantization.
#include "core/quant/float_grids.h"

#include <cmath>
#include <limits>
#include <vector>

#include <ATen/ATen.h>
#include <catch2/catch.hpp>

#include "core/error.h"

using namespace calq;
using core::FpFormat;

namespace {

std::vector<float> round_all(const std::vector<float>& in, FpFormat format) {
  const at::Tensor out = core::round_to_fp_grid(at::tensor(in), format).contiguous();
  return std::vector<float>(out.data_ptr<float>(), out.data_ptr<float>() + out.numel());
}

constexpr float kInf = std::numeric_limits<float>::infinity();

}  // namespace

TEST_CASE("fp format tables hold every finite value once", "[core][quant]") {
  const std::vector<float> e4m3 = core::fp_format_values(FpFormat::E4M3);
  CHECK(e4m3.size() == 253);  // 2 * 126 non-zero magnitudes (S.1111.111 is NaN) + one zero
  CHECK(e4m3.back() == 448.0f);
  CHECK(e4m3.front() == -448.0f);
  CHECK(e4m3[127] == 0.001953125f);  // smallest subnormal 2^-9, right after the zero at 126
  const std::vector<float> e5m2 = core::fp_format_values(FpFormat::E5M2);
  CHECK(e5m2.size() == 247);  // exponent 31 (inf/NaN) excluded
  CHECK(e5m2.back() == 57344.0f);
  CHECK(e5m2[124] == 1.52587890625e-05f);  // 2^-16
  CHECK(core::fp_format_values(FpFormat::E2M1) ==
        std::vector<float>{-6, -4, -3, -2, -1.5f, -1, -0.5f, 0, 0.5f, 1, 1.5f, 2, 3, 4, 6});
  CHECK(core::fp_format_values(FpFormat::NF4).size() == 16);
  CHECK(core::fp_format_max(FpFormat::NF4) == 1.0);
  CHECK(core::parse_fp_format("fp8_e4m3") == FpFormat::E4M3);
  REQUIRE_THROWS_WITH(core::parse_fp_format("fp8"), Catch::Contains("fp8_e4m3, fp8_e5m2"));
}

TEST_CASE("fp8 e4m3 rounds to nearest, ties to even mantissa, and saturates", "[core][quant]") {
  // [1, 2) has step 1/8: 1.0625 is the tie of 1.0 (mantissa 000) and 1.125 (001) -> 1.0;
  // 1.1875 ties 1.125 (001) and 1.25 (010) -> 1.25. 2^-10 ties 0 and 2^-9 -> 0; 3*2^-10 ties
  // 2^-9 (code 1) and 2^-8 (code 2) -> 2^-8. [256, 448] has step 32: 272 -> 256, 304 -> 320,
  // -300 -> -288. Beyond 448 (and inf) saturates, there is no inf in e4m3fn.
  CHECK(round_all({448, 500, 464, 1e6f, -1e6f, kInf, -kInf}, FpFormat::E4M3) ==
        std::vector<float>{448, 448, 448, 448, -448, 448, -448});
  CHECK(round_all({1.0625f, 1.1875f, 1.06f, 1.07f, -1.0625f}, FpFormat::E4M3) ==
        std::vector<float>{1.0f, 1.25f, 1.0f, 1.125f, -1.0f});
  CHECK(round_all({0.0009765625f, 0.0029296875f, 0.0011f}, FpFormat::E4M3) ==
        std::vector<float>{0.0f, 0.00390625f, 0.001953125f});
  CHECK(round_all({272, 304, -300}, FpFormat::E4M3) == std::vector<float>{256, 320, -288});
  const std::vector<float> special =
      round_all({std::numeric_limits<float>::quiet_NaN(), -0.0001f}, FpFormat::E4M3);
  CHECK(std::isnan(special[0]));
  CHECK(special[1] == 0.0f);
  CHECK(std::signbit(special[1]));
}

TEST_CASE("fp8 e5m2 rounds ties to even and saturates at 57344", "[core][quant]") {
  // [1, 2) has step 1/4: 1.125 ties 1.0 (00) and 1.25 (01) -> 1.0; 1.375 ties 1.25 (01) and
  // 1.5 (10) -> 1.5. 2^-17 ties 0 and 2^-16 -> 0; 3*2^-17 ties 2^-16 and 2^-15 -> 2^-15.
  CHECK(round_all({57344, 60000, 1e9f, 1.125f, 1.375f}, FpFormat::E5M2) ==
        std::vector<float>{57344, 57344, 57344, 1.0f, 1.5f});
  CHECK(round_all({7.62939453125e-06f, 2.288818359375e-05f}, FpFormat::E5M2) ==
        std::vector<float>{0.0f, 3.0517578125e-05f});
}

TEST_CASE("fp4 e2m1 rounds ties to the even code", "[core][quant]") {
  // Codes 0..7 = {0, .5, 1, 1.5, 2, 3, 4, 6}. Ties: .25 -> 0 (c0), .75 -> 1 (c2), 1.25 -> 1 (c2),
  // 1.75 -> 2 (c4), 2.5 -> 2 (c4), 3.5 -> 4 (c6), 5 -> 4 (c6); 7 and 100 saturate to 6.
  CHECK(round_all({0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f}, FpFormat::E2M1) ==
        std::vector<float>{0.0f, 1.0f, 1.0f, 2.0f, 2.0f, 4.0f, 4.0f});
  CHECK(round_all({7.0f, 100.0f, -2.5f, -5.0f, 0.3f, 0.2f}, FpFormat::E2M1) ==
        std::vector<float>{6.0f, 6.0f, -2.0f, -4.0f, 0.5f, 0.0f});
}

TEST_CASE("nf4 picks the nearest table entry, ties to the even index", "[core][quant]") {
  const float p1 = 0.07958029955625534f;   // index 8
  const float m1 = -0.09105003625154495f;  // index 6
  // 0.9 > (0.7229568 + 1)/2 = 0.8614784 -> 1; 0.8 -> 0.7229568; 0.05 > 0.0397901 -> p1;
  // -0.05 < -0.0455250 -> m1; -0.04 -> 0. p1/2 ties index 7 (0) and 8 -> p1; m1/2 ties index 6
  // and 7 -> m1. Outside [-1, 1] saturates.
  CHECK(round_all({0.9f, 0.8f, 0.03f, 0.05f, -0.05f, -0.04f}, FpFormat::NF4) ==
        std::vector<float>{1.0f, 0.7229568362236023f, 0.0f, p1, m1, 0.0f});
  CHECK(round_all({p1 / 2, m1 / 2, 1.5f, -2.0f}, FpFormat::NF4) ==
        std::vector<float>{p1, m1, 1.0f, -1.0f});
}

TEST_CASE("scaled fp fake quantization per channel and per group", "[core][quant]") {
  // E4M3 per channel: s = amax/448: row 0 s = 1 -> 448, 1.0625 -> 1, -300 -> -288;
  // row 1 s = 2: 896/2 = 448, 2.125/2 = 1.0625 -> 1 -> 2, 0.
  const at::Tensor w =
      at::tensor(std::vector<float>{448, 1.0625f, -300, 896, 2.125f, 0}).reshape({2, 3});
  const core::FpQuantized q = core::quantize_fp(w, FpFormat::E4M3, -1);
  const at::Tensor deq = q.dequantize().contiguous();
  CHECK(std::vector<float>(deq.data_ptr<float>(), deq.data_ptr<float>() + 6) ==
        std::vector<float>{448, 1, -288, 896, 2, 0});
  // NF4 groups of 2: [2, -1 | 0.5, 0.25]: s = 2: -0.5 -> -0.5250731 (x2); s = 0.5: 0.5 ->
  // 0.4407098 (midpoint with 0.5626170 is 0.5016634) (x0.5). An all-zero group gets s = 1.
  const at::Tensor v = at::tensor(std::vector<float>{2, -1, 0.5f, 0.25f, 0, 0}).reshape({1, 6});
  const core::FpQuantized n = core::quantize_fp(v, FpFormat::NF4, 2);
  const at::Tensor nd = n.dequantize().contiguous();
  CHECK(std::vector<float>(nd.data_ptr<float>(), nd.data_ptr<float>() + 6) ==
        std::vector<float>{2.0f, 2 * -0.5250730514526367f, 0.5f, 0.5f * 0.44070982933044434f, 0.0f,
                           0.0f});
  CHECK(n.scales[0][2].item<float>() == 1.0f);
  REQUIRE_THROWS_AS(core::quantize_fp(v, FpFormat::NF4, 0), Error);
}
