// LoRC (ZeroQuant-V2, docs/algorithms.md §7.3): after a quantizing pass, the rank-m truncated SVD
// of each linear's quantization error E = W − Ŵ gives factors b = U_m Σ_m^{1/2} [out, m] and
// a = Σ_m^{1/2} V_mᵀ [m, in], rounded to the factor dtype, so the linear computes
// x Ŵᵀ + (x aᵀ) bᵀ. Ŵ (the QuantizedTensor) is untouched: packed exports still hold it, and the
// factors go out as a PEFT LoRA adapter beside it (core/checkpoint/lora_adapter.h).
#pragma once

#include <cstdint>
#include <memory>

#include <ATen/core/Tensor.h>

#include "algorithms/pass.h"
#include "core/model/low_rank.h"

namespace calq::core {
struct SchemeSection;
}

namespace calq::algorithms {

/// YAML: `lorc: {rank: 8, factor_dtype: float16|bfloat16|float32}`, after rtn or gptq.
std::unique_ptr<Pass> make_lorc(const core::Options& options, const core::SchemeSection& scheme);

/// The rank-`rank` factors of `error` [out, in] (any float dtype; SVD in float64), each rounded
/// to `factor_dtype`: {a [m, in], b [out, m]} with m = min(rank, out, in).
core::LowRank low_rank_factors(const at::Tensor& error, int64_t rank, at::ScalarType factor_dtype);

}  // namespace calq::algorithms
