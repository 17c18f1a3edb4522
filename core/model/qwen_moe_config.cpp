// Qwen2-MoE and Qwen3-MoE config.json (transformers' Qwen2MoeConfig / Qwen3MoeConfig): the
// Qwen2 / Qwen3 decoder whose MLP is sparse in the layers decoder_sparse_step and
// mlp_only_layers select; experts gate_proj/up_proj/down_proj under mlp.experts, router mlp.gate,
// and for Qwen2-MoE a shared expert every token takes, weighted by sigmoid(shared_expert_gate x).
#include <algorithm>
#include <string>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/model/config_fields.h"
#include "core/model/family_configs.h"

namespace calq::core {

void parse_qwen_moe_config(const std::string& path, const nlohmann::json& j, const ConfigFields& f,
                           ModelConfig& c) {
  const bool qwen2 = c.model_type == "qwen2_moe";
  parse_llama_config(path, j, f, c);
  CALQ_CHECK(!f.optional_bool("use_sliding_window", false),
             "{}: use_sliding_window true is not supported yet for {}; expected false", path,
             c.model_type);
  if (qwen2) {
    // Qwen2MoeAttention: q/k/v bias = qkv_bias (default true), o_proj none.
    c.attention_bias = f.optional_bool("qkv_bias", true);
    c.o_bias = false;
  } else {
    // Qwen3MoeAttention: attention_bias on q/k/v/o, RMSNorm per head on q and k before RoPE.
    c.attention_bias = c.o_bias = f.optional_bool("attention_bias", false);
    c.qk_norm = true;
  }
  c.mlp_bias = false;

  MoeConfig& m = c.moe;
  // transformers 5 writes Qwen3-MoE's count as num_local_experts (attribute_map), older files
  // and Qwen2-MoE as num_experts.
  const char* count_key = f.has("num_experts") ? "num_experts" : "num_local_experts";
  m.n_experts = f.required_positive(count_key);
  m.top_k = f.required_positive("num_experts_per_tok");
  CALQ_CHECK(m.top_k <= m.n_experts,
             "{}: num_experts_per_tok {} exceeds {} ({}); expected at most the expert count",
             path, m.top_k, count_key, m.n_experts);
  m.expert_intermediate = f.required_positive("moe_intermediate_size");
  m.renormalize = f.optional_bool("norm_topk_prob", false);
  m.weights_in_compute_dtype = true;  // router_top_value.to(router_logits.dtype)
  const int64_t step = f.optional_int("decoder_sparse_step").value_or(1);
  CALQ_CHECK(step > 0, "{}: field \"decoder_sparse_step\" is {}; expected a positive integer",
             path, step);
  std::vector<int64_t> dense;
  if (f.has("mlp_only_layers")) {
    const nlohmann::json& list = f.at("mlp_only_layers");
    CALQ_CHECK(list.is_array(), "{}: field \"mlp_only_layers\" is not a list; expected layer "
               "indices", path);
    for (const auto& v : list) {
      CALQ_CHECK(v.is_number_integer() && v.get<int64_t>() >= 0 && v.get<int64_t>() < c.n_layers,
                 "{}: mlp_only_layers holds {}; expected layer indices 0..{}", path, v.dump(),
                 c.n_layers - 1);
      dense.push_back(v.get<int64_t>());
    }
  }
  m.sparse_layers.resize(static_cast<size_t>(c.n_layers));
  for (int64_t i = 0; i < c.n_layers; ++i) {
    // Qwen2MoeDecoderLayer: sparse when not in mlp_only_layers and (i + 1) % step == 0.
    const bool listed = std::find(dense.begin(), dense.end(), i) != dense.end();
    m.sparse_layers[static_cast<size_t>(i)] = !listed && (i + 1) % step == 0;
  }
  m.layout = {"mlp", "gate", "experts", "gate_proj", "up_proj", "down_proj", "", ""};
  if (qwen2) {
    m.shared_intermediate = f.required_positive("shared_expert_intermediate_size");
    m.layout.shared = "shared_expert";
    m.layout.shared_gate = "shared_expert_gate";
  }
}

}  // namespace calq::core
