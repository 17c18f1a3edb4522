// LLM.int8()'s mixed-precision matmul (Dettmers et al. 2022; docs/algorithms.md §6): per call, the
// input columns holding any |x| ≥ τ go through a float matmul, the rest through int8 (per-token
// absmax activations × per-output-channel absmax weights), simulated in float32. The weights'
// int8 part is the Linear's own (fake-quantized) weight; the outlier columns use the original
// float weights (the paper's choice) or the int8 ones (bitsandbytes').
#pragma once

#include <cstdint>
#include <memory>

#include <ATen/core/Tensor.h>

namespace calq::core {

struct Int8Decomposition {
  double threshold = 6.0;
  at::Tensor float_weight;  ///< [out, in] original weights for outlier columns; undefined = int8
  // Counted over every call (reports: the fraction of outlier columns seen).
  int64_t calls = 0;
  int64_t columns = 0;          ///< Σ in_features over calls
  int64_t outlier_columns = 0;  ///< Σ |O| over calls
};

/// Y = deq(CA) · Wqᵀ + X[:, O] · W_O ᵀ + bias for x2d [T, in]; `wq` [out, in] is the
/// fake-quantized int8 weight; `bias` may be undefined. Updates the counters in `d`.
at::Tensor int8_mixed_matmul(const at::Tensor& x2d, const at::Tensor& wq, const at::Tensor& bias,
                             Int8Decomposition& d);

}  // namespace calq::core
