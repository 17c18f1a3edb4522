// The activation fake-quant kernel (docs/algorithms.md §7; core/quant/activation_quant.h fits the
// params and calls it): x̂ = s · (q − z) with q the integer grid's code of x, per row of a
// [tokens, in] view. One element-wise pass; on CUDA a single fused kernel (fake_quant_cuda.cu).
#pragma once

#include <ATen/core/Tensor.h>

#include "core/quant/quantizer.h"

namespace calq::core::kernels {

/// rows [tokens, in] float32; scale [tokens] or [1] float32 (> 0); zero the same shape, int32;
/// spec: the integer grid and bits (core::quantize_codes's rounding: round half to even, ct grids
/// clamp before rounding). Returns x̂ [tokens, in] float32 = core::dequantize(core::quantize_codes(
/// rows, scale, zero, spec), scale, zero), bit for bit on every device.
at::Tensor fake_quantize_rows(const at::Tensor& rows,
                              const at::Tensor& scale,
                              const at::Tensor& zero,
                              const QuantSpec& spec);

}  // namespace calq::core::kernels
