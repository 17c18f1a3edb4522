// The uniform integer quantizer of docs/algorithms.md §1: a QuantSpec (bits, grid, granularity,
// range search), parameter fitting for each grid of §1.1, integer codes and dequantization. The
// numeric foundation of RTN, GPTQ (which fits group params column by column, §3.1 steps 1, 3, 7),
// AWQ, SmoothQuant and the exporters; quantized_tensor.h builds whole weights on top of it.
//
// Numerics, for every function here and in quantized_tensor.h / activation_quant.h:
//  - Inputs of any float dtype are converted to float32 and all arithmetic is float32 (§0), as the
//    GPTQ and llm-awq references do on an fp32 copy of the weight. (AutoAWQ and compressed-tensors
//    compute in the model dtype, bf16/fp16; calq does not reproduce that.)
//  - Rounding is half to even (at::round, i.e. nearbyint), never std::round:
//    round(0.5) = 0, round(1.5) = 2, round(2.5) = 2, round(-2.5) = -2.
//  - x / s is a true float32 division, never x * (1/s), because every reference divides by a scale
//    *tensor*. They differ: a gptq_asym row with range [0, 0.05f] has s = 0.05f/15 =
//    0.00333333341f; for x = 0.005f, x/s = 1.49999988f -> code 1, but x * (1/s) = 0.005f * 300.f
//    = 1.5f -> code 2.
//  - Scale formulas divide too (s = range / 15), as the references do on CPU. On CUDA, PyTorch
//    computes `tensor / python_number` as tensor * (1/number), so llm-awq's and compressed-tensors'
//    GPU scales may differ from ours by one ulp: 0.03f/15 = 0.00199999986f but 0.03f * (1/15.f) =
//    0.00200000009f. GPTQ divides by a tensor (maxq) and is unaffected.
#pragma once

#include <cstdint>
#include <string>

#include <string_view>

#include <ATen/core/Tensor.h>

#include "core/quant/grid.h"

namespace calq::core {

/// §1.2. Weights use PerTensor / PerChannel (one per output row) / PerGroup (one per row and
/// group of `group_size` input columns; the last group is shorter when it does not divide).
enum class Granularity { PerTensor, PerChannel, PerGroup };
/// "per_tensor", "per_channel", "per_group": how files calq writes name a granularity.
std::string_view granularity_name(Granularity granularity);
/// The inverse; throws calq::Error naming `where` for any other string.
Granularity parse_granularity(std::string_view name, std::string_view where);

/// MinMax: the grid's own range (§1.1). Mse: IST-DASLab/gptq quant.py's shrink search (§1.4).
enum class RangeSearch { MinMax, Mse };

/// §1.4 defaults (gptq quant.py `configure(mse=True, norm=2.4, grid=100, maxshrink=.8)`).
struct MseSearch {
  double norm = 2.4;        ///< error = Σ |Q(x) − x|^norm
  int grid = 100;           ///< candidates p = 1 − i/grid, i = 0 … ⌊max_shrink·grid⌋ − 1
  double max_shrink = 0.8;  ///< so at most 20 % of the range is cut
};

struct QuantSpec {
  int bits = 4;  ///< 2, 3, 4 or 8
  Grid grid = Grid::GptqAsym;
  Granularity granularity = Granularity::PerChannel;
  int64_t group_size = -1;  ///< > 0 with PerGroup, −1 otherwise (the YAML's −1 = per channel)
  RangeSearch range = RangeSearch::MinMax;
  MseSearch mse;
  /// Storage dtype of the scales (kHalf for GPTQ/AWQ checkpoints, the model dtype for
  /// compressed-tensors; §0). Codes are always fitted with float32 scales, as the references do;
  /// QuantizedTensor::dequantize() rounds the scales to this dtype first so a fake-quant
  /// evaluation predicts the exported model.
  at::ScalarType scale_dtype = at::kFloat;
};

/// Throws calq::Error for bits outside {2, 3, 4, 8}, a group size inconsistent with the
/// granularity (0, < −1, or given with PerChannel/PerTensor), bad mse options or a scale dtype
/// other than float32/float16/bfloat16.
void validate(const QuantSpec& spec);

/// The weight spec of the YAML `{bits, group_size, grid, sym}`: group_size −1 → PerChannel,
/// > 0 → PerGroup, anything else → calq::Error. Validated.
QuantSpec weight_spec(int bits, Grid grid, int64_t group_size);

/// "gptq_asym w4 g128", "absmax w8 per-channel", "ct_sym w4 per-tensor mse" (reports, logs).
std::string describe(const QuantSpec& spec);

/// One (scale, zero) per row (or per slice, see fit_params_last_dim). The zero is the grid's
/// integer zero point in code space: gptq_asym/awq_asym in [0, 2^b−1]; gptq_sym 2^(b−1) (the
/// reference keeps it as the float 8.0; it is integral, so int32 loses nothing); ct_asym signed in
/// [−2^(b−1), 2^(b−1)−1]; ct_sym and absmax 0.
struct QuantParams {
  at::Tensor scale;  ///< float32, > 0
  at::Tensor zero;   ///< int32, same shape as scale
};

/// Fits the params of a 2-D x [rows, cols] (any float dtype): one (s, z) per row over all of its
/// columns (PerChannel, and PerGroup where the caller passes one group's columns, as GPTQ does),
/// or, with PerTensor, one (s, z) over all of x returned repeated as [rows]. group_size is
/// ignored. Throws calq::Error if x holds NaN/Inf or a range underflows to a zero scale.
QuantParams fit_params(const at::Tensor& x, const QuantSpec& spec);

/// The same for x [..., n] of any rank ≥ 1: one (s, z) per slice along the last dimension,
/// shaped [...] (granularity and group_size ignored). quantize_weight uses it on a
/// [rows, groups, g] view to fit all groups at once.
QuantParams fit_params_last_dim(const at::Tensor& x, const QuantSpec& spec);

/// Integer codes (int32, in code_range(spec.grid, spec.bits)) of x [..., n] (finite, any float
/// dtype): q = clamp(round(x/s) + z, qmin, qmax) (§1). For ct_* the order is compressed-tensors'
/// `_quantize`, q = round(clamp(x/s + z, qmin, qmax)): adding z before rounding moves every exact
/// tie when z is odd (x/s = 1.5, z = −5: round(−3.5) = −4, where round(1.5) − 5 = −3), and the
/// float add can also round x/s + z itself. scale/zero have shape [...]
/// (one per slice; a trailing dim is added) or any shape broadcastable to x.
/// int32 because it holds every grid's codes, signed and unsigned, up to 16 bits; packers narrow.
at::Tensor quantize_codes(const at::Tensor& x,
                          const at::Tensor& scale,
                          const at::Tensor& zero,
                          const QuantSpec& spec);

/// x̂ = s · (q − z) in float32; shapes as for quantize_codes (codes [..., n], scale/zero [...]
/// or broadcastable).
at::Tensor dequantize(const at::Tensor& codes, const at::Tensor& scale, const at::Tensor& zero);

/// Scales as stored: float32 values rounded to `dtype` (kFloat: unchanged, kHalf, kBFloat16) and
/// back to float32. Throws calq::Error when a scale overflows the dtype.
at::Tensor round_scales(const at::Tensor& scales, at::ScalarType dtype);

}  // namespace calq::core
