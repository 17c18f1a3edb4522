// The straight-through-estimator fake quantizer of docs/algorithms.md §9, shared by LKD (§7.2) and
// QAT: the forward value is exactly what RTN will install (core::quantize_weight(w,
// spec).dequantize(), scales rounded to their storage dtype), so a quantizing pass after training
// reproduces the trained student bit for bit; the backward is the clipped STE (gradient 1 where the
// unclamped code lies inside the grid's code range, 0 where the quantizer clamps). Scale and zero
// are fitted from the current latent weight at every call and treated as constants (no LSQ).
#pragma once

#include <ATen/core/Tensor.h>

#include "core/quant/quantizer.h"

namespace calq::algorithms {

/// Fake-quantized `latent` [out, in] (float32; may require grad), in float32.
at::Tensor ste_fake_quant(const at::Tensor& latent, const core::QuantSpec& spec);

/// The clipped-STE mask of `latent` under `spec`: 1 where qmin <= round(w/s) + z <= qmax (for the
/// ct grids, the order they quantize in: round(w/s + z)), else 0; float32 [out, in].
at::Tensor ste_mask(const at::Tensor& latent, const core::QuantSpec& spec);

}  // namespace calq::algorithms
