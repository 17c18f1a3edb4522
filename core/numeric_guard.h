// Numerical guards (issue #9): a NaN or an Inf in a weight, an activation or a Hessian spreads
// into everything computed from it without any error, and surfaces hours later as a NaN
// perplexity or a poisoned checkpoint. So each is counted where it enters, and refused with a
// message that names the layer, the linear and the stage it was seen at.
#pragma once

#include <cstdint>
#include <string_view>

#include <ATen/core/Tensor.h>

namespace calq::core {

/// NaN and ±Inf entries of `t` (0 for integer, bool and undefined tensors): one reduction.
/// Contiguous CPU tensors are scanned in place, without a temporary the size of `t`.
int64_t count_non_finite(const at::Tensor& t);

/// Where a guard looks: layer index, uniform linear name ("mlp.down") and the stage of the run
/// ("weights as loaded", "calibration statistics", "gptq input").
struct GuardSite {
  int64_t layer = 0;
  std::string_view linear;
  std::string_view stage;
};

/// Throws calq::Error "layer 3 mlp.down: Hessian has 12 non-finite (NaN/Inf) entries of 4096
/// (stage: calibration statistics); expected finite values; <hint>" when `t` holds any.
void require_finite(const at::Tensor& t, const GuardSite& site, std::string_view what,
                    std::string_view hint);

}  // namespace calq::core
