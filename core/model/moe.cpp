#include "core/model/moe.h"

#include <ATen/core/grad_mode.h>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <fmt/format.h>

#include "core/error.h"
#include "core/model/model.h"

namespace calq::core {
namespace {

enum ExpertPart { kGate = 0, kUp = 1, kDown = 2 };

/// act(gate x) ⊙ up x with SiLU (every MoE family calq runs has hidden_act silu).
at::Tensor gated(at::Tensor gate, const at::Tensor& up) {
  if (at::GradMode::is_enabled() && (gate.requires_grad() || up.requires_grad()))
    return at::silu(gate) * up;  // autograd (LKD, QAT) needs silu's input unmodified
  at::silu_(gate);
  return gate.mul_(up);
}

}  // namespace

MoeIndex MoeIndex::of(const MoeSpec& spec, size_t first) {
  MoeIndex ix;
  ix.router = first;
  ix.shared = spec.shared_expert;
  size_t next = first + 1;
  if (ix.shared) {
    ix.shared_gate = next++;
    ix.shared_first = next;
    next += 3;
  }
  ix.experts_first = next;
  return ix;
}

void append_moe_mlp(const ModelConfig& c, int64_t i, const std::string& prefix, LayerSchema& s) {
  const MoeConfig& m = c.moe;
  const MoeLayout& l = m.layout;
  const int64_t H = c.hidden_size, I = m.expert_intermediate;
  const std::string block = prefix + l.block + ".";
  using R = LinearRole;
  s.moe.n_experts = m.n_experts;
  s.moe.top_k = m.top_k;
  s.moe.renormalize = m.renormalize;
  s.moe.weights_in_compute_dtype = m.weights_in_compute_dtype;
  s.moe.shared_expert = !l.shared.empty();
  (void)i;

  // Order = MoeIndex::of. The router and the shared gate read norm.mlp like the experts: they
  // take the scale a transform folds into it, kept float (never a default target).
  s.linears.push_back({"moe.router", block + l.router, R::Router, m.n_experts, H, false, 2, "norm.mlp"});
  std::vector<std::string> readers = {"moe.router"};
  if (s.moe.shared_expert) {
    const int64_t Is = m.shared_intermediate;
    const std::string sp = block + l.shared + ".";
    s.linears.push_back({"moe.shared_gate", block + l.shared_gate, R::Router, 1, H, false, 2, "norm.mlp"});
    s.linears.push_back({"mlp.shared.gate", sp + l.gate, R::Gate, Is, H, false, 2, "norm.mlp"});
    s.linears.push_back({"mlp.shared.up", sp + l.up, R::Up, Is, H, false, 2, "norm.mlp"});
    s.linears.push_back({"mlp.shared.down", sp + l.down, R::Down, H, Is, false, 3, ""});
    readers.insert(readers.end(), {"moe.shared_gate", "mlp.shared.gate", "mlp.shared.up"});
  }
  for (int64_t e = 0; e < m.n_experts; ++e) {
    const std::string ep = fmt::format("{}{}.{}.", block, l.experts, e);
    s.linears.push_back({expert_linear_name(e, "gate"), ep + l.gate, R::Gate, I, H, false, 2, "norm.mlp", {}, e});
    s.linears.push_back({expert_linear_name(e, "up"), ep + l.up, R::Up, I, H, false, 2, "norm.mlp", {}, e});
    s.linears.push_back({expert_linear_name(e, "down"), ep + l.down, R::Down, H, I, false, 3, "", {}, e});
    readers.push_back(expert_linear_name(e, "gate"));
    readers.push_back(expert_linear_name(e, "up"));
  }
  // AutoAWQ's Mixtral groups scale every expert's w1/w3 behind post_attention_layernorm and
  // inspect the whole block; calq also scales the router's input columns, so the float routing
  // is unchanged by the transform (docs/moe.md). up → down per expert as in the dense MLP.
  s.scaling.push_back({"norm.mlp", readers, Inspect::Mlp, "", ""});
  if (s.moe.shared_expert)
    s.scaling.push_back({"mlp.shared.up", {"mlp.shared.down"}, Inspect::Linear, "mlp.shared.down", ""});
  for (int64_t e = 0; e < m.n_experts; ++e) {
    const std::string down = expert_linear_name(e, "down");
    s.scaling.push_back({expert_linear_name(e, "up"), {down}, Inspect::Linear, down, ""});
  }
}

at::Tensor moe_mlp_forward(const MoeSpec& spec, const MoeIndex& index, const MoeLinears& linears,
                           const at::Tensor& h, const ForwardContext& ctx) {
  const int64_t batch = h.size(0), seq = h.size(1), hidden = h.size(2);
  const at::Tensor x = h.reshape({-1, hidden});
  // The router (TopKRouter.forward): logits in the compute dtype, softmax in float32, top-k,
  // renormalised when the family says so; Qwen casts the weights back to the logits' dtype.
  const at::Tensor logits = linears.apply(index.router, h).reshape({-1, spec.n_experts});
  const at::Tensor probs = at::softmax(logits.to(at::kFloat), -1);
  auto [top_weights, top_experts] = at::topk(probs, spec.top_k, -1);
  if (spec.renormalize) top_weights = top_weights / top_weights.sum(-1, /*keepdim=*/true);
  if (spec.weights_in_compute_dtype) top_weights = top_weights.to(logits.scalar_type());

  if (ctx.observe_all_experts && ctx.observer) {
    // Statistics only (llm-compressor's calibrate-all-experts): every token through every
    // expert's gate/up, and the gated product as down's input; the output below is unaffected.
    for (int64_t e = 0; e < spec.n_experts; ++e) {
      linears.observe(index.expert(e, kGate), x);
      linears.observe(index.expert(e, kUp), x);
      const at::Tensor act = gated(linears.at(index.expert(e, kGate)).forward(x),
                                   linears.at(index.expert(e, kUp)).forward(x));
      linears.observe(index.expert(e, kDown), act);
    }
  }
  const bool observe_routed = !ctx.observe_all_experts;
  const auto run = [&](size_t k, const at::Tensor& in) {
    return observe_routed ? linears.apply(k, in) : linears.at(k).forward(in);
  };

  // MixtralExperts.forward: experts in increasing index, each on the tokens routed to it, its
  // output times the routing weight index-added into a zero tensor (so a token's sum runs in
  // expert order, as transformers adds it).
  at::Tensor out = at::zeros_like(x);
  const at::Tensor routed = top_experts;  // [tokens, top_k]
  for (int64_t e = 0; e < spec.n_experts; ++e) {
    const at::Tensor hit = routed.eq(e);
    const at::Tensor where = hit.nonzero();  // [n, 2]: (token, slot), token-major
    if (where.size(0) == 0) continue;
    const at::Tensor token = where.select(1, 0);
    const at::Tensor slot = where.select(1, 1);
    const at::Tensor state = x.index_select(0, token);
    const at::Tensor act = gated(run(index.expert(e, kGate), state), run(index.expert(e, kUp), state));
    at::Tensor y = run(index.expert(e, kDown), act);
    const at::Tensor w = top_weights.index({token, slot}).unsqueeze(1);
    y = y * w;
    out.index_add_(0, token, y.to(out.scalar_type()));
  }
  if (index.shared) {
    // Qwen2MoeSparseMoeBlock: experts + sigmoid(shared_expert_gate(x)) * shared_expert(x),
    // computed on [batch, seq, hidden] so the shared linears' statistics keep their windows.
    const at::Tensor shared_act = gated(linears.apply(index.shared_first + kGate, h),
                                        linears.apply(index.shared_first + kUp, h));
    const at::Tensor shared = linears.apply(index.shared_first + kDown, shared_act);
    const at::Tensor weight = at::sigmoid(linears.apply(index.shared_gate, h));
    out = out + (weight * shared).reshape({-1, hidden});
  }
  return out.reshape({batch, seq, hidden});
}

}  // namespace calq::core
