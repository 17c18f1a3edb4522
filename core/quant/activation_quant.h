// Fake quantization of Linear inputs (docs/algorithms.md §1.2 per-token / static per-tensor, §5.3
// SmoothQuant W8A8, §7.1 ZeroQuant token-wise activations). Symmetric = the absmax grid of
// smoothquant fake_quant.py (`quantize_activation_per_token_absmax`, `..._per_tensor_absmax`):
// s = max(amax, 1e-5) / (2^(b-1) − 1), x̂ = s · round(x/s). Asymmetric = the awq_asym formulas
// per token (raw min/max, s = max(max−min, 1e-5)/(2^b − 1), z = clamp(−round(min/s), 0, 2^b−1)),
// calq's choice since no reference above quantizes activations asymmetrically.
// FP8 activations (ZeroQuant-FP, §7.4; §1.5 for the grids): s = max(amax, 1e-5) / fmax per token
// or per tensor, x̂ = s · round_to_fp_grid(x/s), saturating at ±fmax; symmetric only.
#pragma once

#include <optional>

#include <ATen/core/Tensor.h>

#include "core/quant/act_granularity.h"
#include "core/quant/float_grids.h"
#include "core/quant/grid.h"
#include "core/quant/quantizer.h"

namespace calq::core {

struct ActQuantSpec {
  // A constructor rather than an aggregate, so that {bits, sym, granularity} stays free of
  // -Wmissing-field-initializers now that an FP format may follow.
  ActQuantSpec(int bits_ = 8, bool sym_ = true,
               ActGranularity granularity_ = ActGranularity::PerToken,
               std::optional<FpFormat> fp_ = std::nullopt)
      : bits(bits_), sym(sym_), granularity(granularity_), fp(fp_) {}
  int bits = 8;  ///< 2, 3, 4 or 8 (8 with an FP8 format)
  bool sym = true;
  ActGranularity granularity = ActGranularity::PerToken;
  std::optional<FpFormat> fp;  ///< set: the FP8 grid (E4M3 / E5M2) instead of integers
};

/// Grid::Absmax when sym, else Grid::AwqAsym.
Grid activation_grid(const ActQuantSpec& spec);

/// Dynamic params of x [..., in] (any float dtype, finite): PerToken → scale/zero shaped like
/// x without its last dim; PerTensor → shape [1]. A calibrator can fit a static scale by
/// passing the per-channel max it collected (absmax: the scale depends only on max |x|).
/// FP formats: scale = max(amax, 1e-5) / fmax, zero 0.
QuantParams fit_activation_params(const at::Tensor& x, const ActQuantSpec& spec);

/// x̂ of x [..., in], returned in x's dtype (computed in float32). With `static_scale` (numel 1,
/// requires PerTensor) the scale is not refitted and codes clamp to the grid's range: sym
/// [−(2^(b−1)−1), 2^(b−1)−1], asym [0, 2^b−1] with `static_zero` (numel 1, required for asym;
/// must be 0 or absent for sym). Throws calq::Error for inconsistent arguments.
at::Tensor fake_quantize_activations(const at::Tensor& x,
                                     const ActQuantSpec& spec,
                                     const std::optional<at::Tensor>& static_scale = std::nullopt,
                                     const std::optional<at::Tensor>& static_zero = std::nullopt);

}  // namespace calq::core
