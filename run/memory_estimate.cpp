#include "run/memory_estimate.h"

#include <algorithm>
#include <map>

#include <c10/core/ScalarType.h>
#include <nlohmann/json.hpp>

#include "core/model/layer_schema.h"
#include "core/model/model_config.h"

namespace calq::run {
namespace {

constexpr double kMiB = 1024.0 * 1024.0;

/// Resident between the layers of a streamed 7B-shaped run, less its calibration inputs.
constexpr double kRuntimeMb = 200.0;

}  // namespace

MemoryEstimate estimate_memory(const core::ModelConfig& c, const core::LayerSchema& layer,
                               c10::ScalarType compute_dtype,
                               const CalibrationFootprint& calibration, bool streaming) {
  const auto e = static_cast<double>(c10::elementSize(compute_dtype));
  const auto stored = static_cast<double>(c10::elementSize(c.storage_dtype));
  const auto h = static_cast<double>(c.hidden_size);
  const auto inter = static_cast<double>(c.intermediate_size);
  // The layer's linears as its family declares them: their weights, and the widest input (the
  // side of the largest Hessian).
  double layer_params = 0.0, d = h;
  for (const core::LinearSpec& l : layer.linears) {
    layer_params += static_cast<double>(l.out) * static_cast<double>(l.in);
    d = std::max(d, static_cast<double>(l.in));
  }
  const auto tokens = static_cast<double>(calibration.tokens);
  const auto batch = static_cast<double>(std::min(calibration.batch_tokens, calibration.tokens));
  MemoryEstimate m;
  m.runtime_mb = kRuntimeMb;
  m.layer_mb = layer_params * e / kMiB;
  m.codes_mb = layer_params / kMiB;
  m.inputs_mb = (calibration.resident_copies > 0
                     ? static_cast<double>(calibration.resident_copies) * tokens
                     : batch) * h * e / kMiB;
  // The statistics see the widest input converted to float32 (a copy unless it already is).
  m.activations_mb = (batch * (2.0 * inter + 2.0 * h) * e + (e < 4 ? batch * d * 4.0 : 0.0)) / kMiB;
  m.linear_inputs_mb = calibration.keeps_linear_inputs ? tokens * d * e / kMiB : 0.0;
  // Every linear of a true-sequential step accumulates its own sum at once (an MoE layer's
  // experts: E of them); the largest step's total. A dense family's widest linear (down, fc2)
  // is alone in its step, where this is the 4 d² it always was.
  std::map<int, double> step_sums;
  for (const core::LinearSpec& l : layer.linears)
    step_sums[l.sequential_step] += 4.0 * static_cast<double>(l.in) * static_cast<double>(l.in);
  double largest_step = 4.0 * d * d;
  for (const auto& [step, bytes] : step_sums) largest_step = std::max(largest_step, bytes);
  m.hessian_sum_mb = largest_step / kMiB;
  // Factorizing: H (damped in place), its inverse factor U and W transposed; then the column
  // loop: U, W transposed, the codes and Ŵ (H freed once factorized).
  m.gptq_mb = std::max(8.0 * d * d + 4.0 * d * h, 4.0 * d * d + 12.0 * d * h) / kMiB;
  m.embedding_mb = streaming ? 0.0 : static_cast<double>(c.vocab_size) * h * stored / kMiB;
  return m;
}

double MemoryEstimate::total_mb() const { return std::max(statistics_phase_mb(), gptq_phase_mb()); }

std::string MemoryEstimate::json() const {
  return nlohmann::json{
      {"formula", "max(statistics phase, GPTQ phase) of the widest linear (input width d, "
                  "rows r); statistics: runtime + layer (compute dtype) + the layer's codes "
                  "(1 byte/weight) + inputs X_i (resident copies x tokens x hidden, compute "
                  "dtype; one batch when offloaded) + one batch's forward (batch tokens x (2 "
                  "intermediate + 2 hidden), plus batch tokens x d float32 below float32 compute) "
                  "+ kept linear inputs (tokens x d, AWQ) + double upper-triangle Hessian sum "
                  "(4 d^2) + embedding (not with --stream); GPTQ: runtime + layer + codes + "
                  "inputs + embedding + max(float H, inverse factor U and W transposed: 8 d^2 + "
                  "4 d r; U, W transposed, codes and dequantized W: 4 d^2 + 12 d r)"},
      {"runtime_mb", runtime_mb},
      {"layer_mb", layer_mb},
      {"codes_mb", codes_mb},
      {"inputs_mb", inputs_mb},
      {"activations_mb", activations_mb},
      {"linear_inputs_mb", linear_inputs_mb},
      {"hessian_sum_mb", hessian_sum_mb},
      {"gptq_mb", gptq_mb},
      {"embedding_mb", embedding_mb},
      {"statistics_phase_mb", statistics_phase_mb()},
      {"gptq_phase_mb", gptq_phase_mb()},
      {"total_mb", total_mb()}}
      .dump();
}

}  // namespace calq::run
