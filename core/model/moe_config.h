// What a mixture-of-experts family's config.json says about its experts, and where its
// checkpoint keeps them (each MoE family fills MoeLayout in its own config reader:
// core/model/mixtral_config.cpp, core/model/qwen_moe_config.cpp). The layer schema
// (core/model/moe.cpp) turns both into linears, steps and scaling pairs (docs/moe.md).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace calq::core {

/// Checkpoint names of an MoE block under model.layers.<i>.: `<block>.<router>`,
/// `<block>.<experts>.<e>.<gate|up|down>`, and for a shared expert `<block>.<shared>.<...>`
/// with its gate `<block>.<shared_gate>`.
struct MoeLayout {
  std::string block;         ///< "block_sparse_moe" (Mixtral), "mlp" (Qwen)
  std::string router;        ///< "gate"
  std::string experts = "experts";
  std::string gate, up, down;  ///< per-expert linear names: w1 / w3 / w2, or *_proj
  std::string shared;        ///< "shared_expert" (Qwen2-MoE), "" for none
  std::string shared_gate;   ///< "shared_expert_gate"
};

struct MoeConfig {
  int64_t n_experts = 0;            ///< 0: a dense model
  int64_t top_k = 0;                ///< num_experts_per_tok
  int64_t expert_intermediate = 0;  ///< each routed expert's intermediate size
  int64_t shared_intermediate = 0;  ///< the shared expert's; 0: none
  bool renormalize = true;          ///< norm_topk_prob (Mixtral: always)
  bool weights_in_compute_dtype = false;  ///< Qwen routers cast the top-k weights back
  std::vector<bool> sparse_layers;  ///< per layer: MoE MLP (else the dense one, intermediate_size)
  MoeLayout layout;
  bool sparse(int64_t layer) const {
    return n_experts > 0 && layer >= 0 && layer < static_cast<int64_t>(sparse_layers.size()) &&
           sparse_layers[static_cast<size_t>(layer)];
  }
};

}  // namespace calq::core
