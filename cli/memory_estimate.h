// What should dominate a quantization run's peak memory (issue #8), for report.json beside the
// measured peak RSS: one decoder layer in the compute dtype, the calibration activations, the
// widest linear's Hessian with GPTQ's working copies, and the embedding table. With
// `calq run --stream` nothing else grows with the number of layers.
#pragma once

#include <cstdint>
#include <string>

#include <c10/core/ScalarType.h>

namespace calq::core {
struct ModelConfig;
}

namespace calq::cli {

struct MemoryEstimate {
  double layer_mb = 0;        ///< one decoder layer's weights, compute dtype
  double activations_mb = 0;  ///< X_i, X_{i+1} and the widest linear input over the calibration tokens
  double hessian_mb = 0;      ///< widest input d: double sum 8d² + float H 4d² + GPTQ's H copy and factor 8d²
  double embedding_mb = 0;    ///< the embedding table, stored dtype (the head is read for evaluation only)
  double total_mb() const { return layer_mb + activations_mb + hessian_mb + embedding_mb; }
  std::string json() const;   ///< report.json memory.estimate
};

MemoryEstimate estimate_memory(const core::ModelConfig& config, c10::ScalarType compute_dtype,
                               int64_t calibration_tokens);

}  // namespace calq::cli
