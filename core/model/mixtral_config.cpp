// Mixtral config.json (transformers' MixtralConfig): the Mistral decoder with a sparse MoE MLP in
// every layer — num_local_experts experts w1/w3/w2 under block_sparse_moe, a linear router
// `gate`, softmax over all experts, top num_experts_per_tok renormalised (MixtralTopKRouter).
#include <string>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/model/config_fields.h"
#include "core/model/family_configs.h"

namespace calq::core {

void parse_mixtral_config(const std::string& path, const nlohmann::json& j, const ConfigFields& f,
                          ModelConfig& c) {
  parse_llama_config(path, j, f, c);  // attention, RoPE, norms: Mistral's
  // MixtralAttention passes config.sliding_window to the attention (null in Mixtral-8x7B).
  if (f.has("sliding_window")) c.sliding_window = f.required_positive("sliding_window");
  MoeConfig& m = c.moe;
  m.n_experts = f.required_positive("num_local_experts");
  m.top_k = f.optional_int("num_experts_per_tok").value_or(2);
  CALQ_CHECK(m.top_k > 0 && m.top_k <= m.n_experts,
             "{}: num_experts_per_tok {} is outside 1..num_local_experts ({}); expected a count "
             "of experts", path, m.top_k, m.n_experts);
  m.expert_intermediate = c.intermediate_size;
  m.renormalize = true;                 // router_top_value /= sum, unconditionally
  m.weights_in_compute_dtype = false;   // the weights stay float32 (softmax of logits.float())
  m.sparse_layers.assign(static_cast<size_t>(c.n_layers), true);
  m.layout = {"block_sparse_moe", "gate", "experts", "w1", "w3", "w2", "", ""};
}

}  // namespace calq::core
