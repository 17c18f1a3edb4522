// What should dominate a quantization run's peak memory (issue #8), for report.json beside the
// measured peak RSS. The resident set peaks in one of two phases of the widest linear's step
// (a 7B down_proj), on top of one decoder layer in the compute dtype and the codes of the layer's
// linears quantized so far: gathering its statistics (the calibration activations through the
// layer's forward, the double upper-triangle Hessian sum) or quantizing it with GPTQ (the
// float H, its inverse factor, the transposed weight, codes and dequantized weight). Without
// `--stream` the embedding table stays resident too. Nothing else grows with the layer count.
#pragma once

#include <cstdint>
#include <string>

#include <c10/core/ScalarType.h>

namespace calq::core {
struct ModelConfig;
struct LayerSchema;
}

namespace calq::run {

struct MemoryEstimate {
  double runtime_mb = 0;      ///< LibTorch and calq's own code and data (measured, ~200 MiB)
  double layer_mb = 0;        ///< one decoder layer's weights, compute dtype
  double codes_mb = 0;        ///< the layer's integer codes, one byte per weight (compact)
  double inputs_mb = 0;       ///< X_i and X_{i+1} over the calibration tokens, compute dtype
  double activations_mb = 0;  ///< the forward's two widest MLP outputs over the calibration tokens
  double hessian_sum_mb = 0;  ///< the double upper triangles of the largest step, Σ 4 in²
  double gptq_mb = 0;         ///< max(H, U, Wᵀ: 8d² + 4d·r; U, Wᵀ, codes, Ŵ: 4d² + 12d·r)
  double embedding_mb = 0;    ///< the table in its stored dtype; 0 with --stream (freed after X_0)
  double statistics_phase_mb() const {
    return runtime_mb + layer_mb + codes_mb + inputs_mb + activations_mb + hessian_sum_mb +
           embedding_mb;
  }
  double gptq_phase_mb() const {
    return runtime_mb + layer_mb + codes_mb + inputs_mb + gptq_mb + embedding_mb;
  }
  double total_mb() const;    ///< the larger phase
  std::string json() const;   ///< report.json memory.estimate
};

/// `layer`: the schema of the model's first layer (the family's linears and their shapes).
MemoryEstimate estimate_memory(const core::ModelConfig& config, const core::LayerSchema& layer,
                               c10::ScalarType compute_dtype, int64_t calibration_tokens,
                               bool streaming);

}  // namespace calq::run
