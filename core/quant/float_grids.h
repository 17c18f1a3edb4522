// Non-uniform and floating-point grids of docs/algorithms.md §1.5: FP8 E4M3 (fn) and E5M2, FP4 E2M1
// and bitsandbytes' NF4 table. Rounding goes to the nearest representable value, ties to the even
// code (for the FP formats that is IEEE's ties-to-even mantissa), saturating at ±max. It is done
// by a nearest-value search over the sorted table of representable values, so it is obviously
// right rather than fast. Used by fake-quant evaluation of FP8/FP4/NF4 schemes (issue #7).
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include <ATen/core/Tensor.h>

namespace calq::core {

enum class FpFormat {
  E4M3,  ///< FP8 e4m3fn: bias 7, max ±448, no inf, NaN = S.1111.111, subnormals to 2^-9
  E5M2,  ///< FP8 e5m2: bias 15, max ±57344 (inf/NaN exist but rounding saturates), min 2^-16
  E2M1,  ///< FP4: magnitudes {0, 0.5, 1, 1.5, 2, 3, 4, 6}
  NF4,   ///< bitsandbytes get_4bit_type("nf4"): 16 values in [-1, 1], codes 0..15 ascending
};

/// "fp8_e4m3", "fp8_e5m2", "fp4_e2m1", "nf4".
std::string_view fp_format_name(FpFormat format);
/// Inverse of fp_format_name; throws calq::Error listing the valid names.
FpFormat parse_fp_format(std::string_view name);

/// Largest finite magnitude: 448, 57344, 6, 1.
double fp_format_max(FpFormat format);

/// Every finite representable value, ascending, each once (one zero): 253 for E4M3, 247 for
/// E5M2, 15 for E2M1, 16 for NF4.
std::vector<float> fp_format_values(FpFormat format);

/// Elementwise nearest representable value of x (any float dtype; result float32, same shape):
/// ties to the even code, |x| above max (and ±Inf) saturate to ±max, NaN stays NaN, the sign of
/// a value rounded to zero is kept (−0). No scaling: see fake_quantize_fp.
at::Tensor round_to_fp_grid(const at::Tensor& x, FpFormat format);

/// A scaled FP/NF4 fake-quantization of a weight: values are on the format's grid,
/// Ŵ = scales[:, g_idx] · values.
struct FpQuantized {
  at::Tensor values;  ///< [out, in] float32, representable in the format
  at::Tensor scales;  ///< [out, n_groups] float32
  at::Tensor g_idx;   ///< [in] int32, j / group_size (all 0 per channel)
  FpFormat format = FpFormat::E4M3;
  int64_t group_size = -1;
  at::Tensor dequantize() const;  ///< [out, in] float32
};

/// w [out, in] (finite) per channel (group_size −1) or per group of group_size input columns
/// (shorter last group allowed): s = amax / max_of_format (true division; an all-zero group gets
/// s = 1), values = round_to_fp_grid(w / s). E4M3: s = amax/448 (§1.5). NF4: s = absmax of the
/// block; bitsandbytes blocks the flattened tensor by 64, which equals group_size 64 when
/// 64 | in. (bitsandbytes' CUDA kernel multiplies by 1/absmax; calq divides, as everywhere.)
/// pow2_scales: s = 2^ceil(log2(amax / max_of_format)) instead (ZeroQuant-FP, §7.4: a power-of-two
/// scale makes FP4 → FP8 conversion exact); rounding up keeps amax / s within the format's range.
FpQuantized quantize_fp(const at::Tensor& w, FpFormat format, int64_t group_size,
                        bool pow2_scales = false);

/// quantize_fp(w, format, group_size, pow2_scales).dequantize().
at::Tensor fake_quantize_fp(const at::Tensor& w, FpFormat format, int64_t group_size,
                            bool pow2_scales = false);

}  // namespace calq::core
