// The mixture-of-experts MLP shared by Mixtral, Qwen2-MoE and Qwen3-MoE (docs/moe.md): its
// part of the layer schema, built from the family's MoeConfig, and its forward, matched to
// transformers 5 (MixtralSparseMoeBlock, Qwen2MoeSparseMoeBlock, Qwen3MoeSparseMoeBlock).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>

#include <ATen/core/Tensor.h>

#include "core/model/layer_schema.h"
#include "core/model/model_config.h"

namespace calq::core {

struct Linear;
struct ForwardContext;

/// Appends layer i's MoE MLP to `s` (whose attention linears are in place, ending at the
/// schema's step 1): moe.router, [moe.shared_gate, mlp.shared.gate/up/down], then every expert's
/// gate, up, down; steps gate/up/router (2) → down (3); the scaling pairs norm.mlp → every
/// reader of the MLP input (router first: it sees every token, so the group's input statistics
/// are taken from it), shared up → down, and each expert's up → down.
void append_moe_mlp(const ModelConfig& c, int64_t i, const std::string& prefix, LayerSchema& s);

/// Positions of the MoE linears in the schema's list (append_moe_mlp's order), from the first.
struct MoeIndex {
  size_t router = 0;
  bool shared = false;
  size_t shared_gate = 0, shared_first = 0;  ///< shared expert: gate, up, down from shared_first
  size_t experts_first = 0;
  size_t expert(int64_t e, int part) const { return experts_first + 3 * size_t(e) + size_t(part); }
  static MoeIndex of(const MoeSpec& spec, size_t first);
};

/// The block's view of its layer: apply(k, x) runs the k-th linear (observing its input),
/// observe(k, x) only reports x as the k-th linear's input.
struct MoeLinears {
  std::function<at::Tensor(size_t, const at::Tensor&)> apply;
  std::function<void(size_t, const at::Tensor&)> observe;
  std::function<const Linear&(size_t)> at;
};

/// h [batch, seq, hidden] (norm.mlp's output) -> the block's output, same shape. The observer
/// sees each expert's linears on the tokens routed to it, or, with ctx.observe_all_experts, on
/// every token (statistics only: the output always follows the routing).
at::Tensor moe_mlp_forward(const MoeSpec& spec, const MoeIndex& index, const MoeLinears& linears,
                           const at::Tensor& h, const ForwardContext& ctx);

}  // namespace calq::core
