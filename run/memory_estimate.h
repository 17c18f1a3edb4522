// What should dominate a quantization run's peak memory (issues #8, #22), for report.json beside
// the measured peak RSS. The resident set peaks in one of two phases of the widest linear's step
// (a 7B down_proj), on top of one decoder layer in the compute dtype and the codes of the layer's
// linears quantized so far: gathering its statistics (one batch's activations through the
// layer's forward, the double upper-triangle Hessian sum) or quantizing it with GPTQ (the
// float H, its inverse factor, the transposed weight, codes and dequantized weight). The layer
// inputs X_i count once in memory (X_{i+1} overwrites them), twice under float propagation, and
// not at all when offloaded to the scratch file (one batch then). Passes that keep every token's
// linear inputs (AWQ's search) add them. Without `--stream` the embedding table stays resident
// too. Nothing else grows with the layer count, and only X_i and kept linear inputs with the
// calibration tokens.
#pragma once

#include <cstdint>
#include <string>

#include <c10/core/ScalarType.h>

namespace calq::core {
struct ModelConfig;
struct LayerSchema;
}

namespace calq::run {

/// How the calibration engine will hold the calibration tokens (calib/layerwise_runner.h).
struct CalibrationFootprint {
  int64_t tokens = 0;          ///< nsamples × seqlen
  int64_t batch_tokens = 0;    ///< windows per forward × seqlen
  int64_t resident_copies = 1; ///< copies of X_i in memory: 1, 2 (float propagation), 0 (offloaded)
  bool keeps_linear_inputs = false;  ///< a pass keeps every token's input of a step's linears
};

struct MemoryEstimate {
  double runtime_mb = 0;      ///< LibTorch and calq's own code and data (measured, ~200 MiB)
  double layer_mb = 0;        ///< one decoder layer's weights, compute dtype
  double codes_mb = 0;        ///< the layer's integer codes, one byte per weight (compact)
  double inputs_mb = 0;       ///< the resident copies of X_i (or one batch of it), compute dtype
  double activations_mb = 0;  ///< one batch through the layer: two widest MLP outputs, two
                              ///< hidden-wide temporaries, the observed input as float32
  double linear_inputs_mb = 0;  ///< kept linear inputs: every token at the widest input
  double hessian_sum_mb = 0;  ///< the double upper triangles of the largest step, Σ 4 in²
  double gptq_mb = 0;         ///< max(H, U, Wᵀ: 8d² + 4d·r; U, Wᵀ, codes, Ŵ: 4d² + 12d·r)
  double embedding_mb = 0;    ///< the table in its stored dtype; 0 with --stream (freed after X_0)
  double statistics_phase_mb() const {
    return runtime_mb + layer_mb + codes_mb + inputs_mb + activations_mb + linear_inputs_mb +
           hessian_sum_mb + embedding_mb;
  }
  double gptq_phase_mb() const {
    return runtime_mb + layer_mb + codes_mb + inputs_mb + gptq_mb + embedding_mb;
  }
  double total_mb() const;    ///< the larger phase
  std::string json() const;   ///< report.json memory.estimate
};

/// `layer`: the schema of the model's first layer (the family's linears and their shapes).
MemoryEstimate estimate_memory(const core::ModelConfig& config, const core::LayerSchema& layer,
                               c10::ScalarType compute_dtype,
                               const CalibrationFootprint& calibration, bool streaming);

}  // namespace calq::run
