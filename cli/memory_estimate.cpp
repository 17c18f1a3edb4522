#include "cli/memory_estimate.h"

#include <algorithm>

#include <c10/core/ScalarType.h>
#include <nlohmann/json.hpp>

#include "core/model/model_config.h"

namespace calq::cli {

MemoryEstimate estimate_memory(const core::ModelConfig& c, c10::ScalarType compute_dtype,
                               int64_t calibration_tokens) {
  constexpr double kMiB = 1024.0 * 1024.0;
  const auto e = static_cast<double>(c10::elementSize(compute_dtype));
  const auto stored = static_cast<double>(c10::elementSize(c.storage_dtype));
  const auto h = static_cast<double>(c.hidden_size);
  const auto inter = static_cast<double>(c.intermediate_size);
  const auto q_out = static_cast<double>(c.n_heads * c.head_dim);
  const auto kv_out = static_cast<double>(c.n_kv_heads * c.head_dim);
  const double mlp_matrices = c.family == core::Family::Llama ? 3.0 : 2.0;  // gate, up, down
  const double layer_params = h * q_out + 2.0 * h * kv_out + q_out * h + mlp_matrices * h * inter;
  const auto tokens = static_cast<double>(calibration_tokens);
  const double d = std::max({h, inter, q_out});
  MemoryEstimate m;
  m.layer_mb = layer_params * e / kMiB;
  m.activations_mb = tokens * (2.0 * h + inter) * e / kMiB;
  m.hessian_mb = 20.0 * d * d / kMiB;
  m.embedding_mb = static_cast<double>(c.vocab_size) * h * stored / kMiB;
  return m;
}

std::string MemoryEstimate::json() const {
  return nlohmann::json{
      {"formula", "layer (compute dtype) + calibration activations (X_i, X_i+1, widest linear "
                  "input) + widest Hessian (double sum, float H, GPTQ's copy and factor: 20 d^2 "
                  "bytes) + embedding table (stored dtype)"},
      {"layer_mb", layer_mb},
      {"activations_mb", activations_mb},
      {"hessian_mb", hessian_mb},
      {"embedding_mb", embedding_mb},
      {"total_mb", total_mb()}}
      .dump();
}

}  // namespace calq::cli
