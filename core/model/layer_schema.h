// A decoder layer described as data: its linears (checkpoint names, shapes, role, true-sequential
// step, input), its norms (form and position) and the scale-transfer pairs SmoothQuant and AWQ may
// use. Each family declares its schema once, in its own file (llama.cpp, opt.cpp, gpt2.cpp); the
// model loads layers from it and every pass, exporter and estimate reads it instead of keeping
// its own list of names (docs/howto-add-family.md).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace calq::core {

/// How a norm applies its gain γ to the normalised x̂ (and so how a scale folds into it).
enum class NormForm {
  Rms,         ///< γ ⊙ x̂ (LlamaRMSNorm)
  RmsOnePlus,  ///< (1 + γ) ⊙ x̂ (GemmaRMSNorm)
  Layer,       ///< γ ⊙ x̂ + β (nn.LayerNorm)
};

/// Where a norm sits in the block.
enum class NormSite {
  PreAttention,   ///< input of the attention block (input_layernorm, ln_1)
  PostAttention,  ///< on the attention output before the residual add (Gemma 2/3)
  PreMlp,         ///< input of the MLP block (post_attention_layernorm in Llama's naming, ln_2)
  PostMlp,        ///< on the MLP output before the residual add (Gemma 2/3)
  QueryHeads,     ///< per head on q before RoPE (Qwen3, Gemma 3)
  KeyHeads,       ///< per head on k before RoPE
};

/// What a linear computes in its block; passes treat kinds of linears differently by role,
/// never by name.
enum class LinearRole {
  Query,
  Key,
  Value,
  Output,  ///< attention output projection (o_proj, out_proj, c_proj)
  Gate,    ///< gated MLP: act(gate(x)) ⊙ up(x)
  Up,
  MlpIn,   ///< ungated MLP's first linear (fc1, c_fc)
  Down,    ///< the MLP's output linear (down_proj, fc2)
  /// A gate computed from the MLP input that weighs, not transforms, the hidden state: an MoE
  /// router (top-k expert scores) or Qwen2-MoE's shared-expert gate. Never a default target
  /// (its uniform name lies outside attn.* / mlp.*): a quantized router reroutes tokens.
  Router,
  /// q, k and v stored and quantized as one linear, rows q|k|v (Phi-3's qkv_proj); its
  /// LinearSpec::parts gives the three row counts.
  QueryKeyValue,
  /// gate and up stored and quantized as one linear, rows gate|up (Phi-3's gate_up_proj):
  /// act(first half) ⊙ second half.
  GateUp,
};

struct NormSpec {
  std::string name;        ///< uniform name: "norm.attn", "norm.mlp"
  std::string checkpoint;  ///< tensor prefix: "model.layers.3.input_layernorm"
  NormForm form = NormForm::Rms;
  NormSite site = NormSite::PreAttention;
  int64_t size = 0;  ///< length of γ
  bool bias() const { return form == NormForm::Layer; }
};

struct LinearSpec {
  std::string name;        ///< uniform name: "attn.q"
  std::string checkpoint;  ///< tensor prefix ("model.layers.3.self_attn.q_proj"); empty when
                           ///< the checkpoint stores it fused with its neighbours (GPT-2 c_attn)
  LinearRole role = LinearRole::Query;
  int64_t out = 0, in = 0;
  bool bias = false;
  /// True-sequential order (IST-DASLab/gptq llama_sequential): linears of one step read the same
  /// input and are quantized together; steps run in increasing order.
  int sequential_step = 0;
  /// What its input is: the name of the norm whose output it reads, or "" for an input computed
  /// inside the block (attention's softmax·v, the MLP activation).
  std::string input_norm;
  /// A fused linear's output rows per part, in order (q|k|v, gate|up; they sum to `out`); empty
  /// for a linear that computes one thing. What reads the output part by part (the bmm-input
  /// quantizer: q, k and v are separate matmul inputs) takes its boundaries from here.
  std::vector<int64_t> parts{};
  /// The routed expert this linear belongs to (mixture of experts), or -1: its statistics are
  /// over the tokens routed to that expert only (docs/moe.md).
  int64_t expert = -1;
};

/// The mixture-of-experts MLP of a layer (Mixtral, Qwen2-MoE, Qwen3-MoE), as data. The block
/// computes out = Σ_{e ∈ top-k(x)} w_e(x) · down_e(act(gate_e x) ⊙ up_e x) [+ σ(g·x) · shared(x)]
/// with expert e's linears named mlp.experts.<e>.gate/up/down, the router moe.router and, when
/// present, the shared expert mlp.shared.gate/up/down and its gate moe.shared_gate.
struct MoeSpec {
  int64_t n_experts = 0;  ///< 0: the layer's MLP is dense
  int64_t top_k = 0;
  /// Top-k probabilities renormalised to sum to 1 (Mixtral always; Qwen: norm_topk_prob).
  bool renormalize = true;
  /// The top-k weights cast to the router logits' dtype before weighing the experts (Qwen's
  /// routers); Mixtral keeps them in float32.
  bool weights_in_compute_dtype = false;
  bool shared_expert = false;  ///< Qwen2-MoE: a dense expert every token takes, sigmoid-gated
  bool active() const { return n_experts > 0; }
};

/// The uniform name of expert e's linear `part` (gate, up, down): "mlp.experts.3.up".
std::string expert_linear_name(int64_t expert, std::string_view part);

/// The module whose output AWQ compares when it searches a pair's scale (docs/algorithms.md §4.1).
enum class Inspect { Attention, Mlp, Linear };

/// A scale transfer: 1/s folds into `prev_op` (a norm or a linear's output rows), s multiplies
/// the input columns of `linears`; the float function is unchanged when the step from prev_op's
/// output to the linears' input is positively homogeneous. `refused` says why a pair the block
/// has cannot take a scale (GPT-2's GELU between fc1 and fc2); passes report it, never apply it.
struct ScalingPair {
  std::string prev_op;
  std::vector<std::string> linears;
  Inspect inspect = Inspect::Linear;
  std::string inspected_linear;  ///< with Inspect::Linear: whose output is compared
  std::string refused;
  /// With a linear prev_op: the output rows [prev_rows_begin, prev_rows_begin + prev_rows) that
  /// become the linears' input columns; prev_rows 0 means every row. A fused producer feeds a
  /// pair with one slice only: Phi-3's v rows of qkv_proj → o_proj, up half of gate_up_proj →
  /// down_proj.
  int64_t prev_rows_begin = 0;
  int64_t prev_rows = 0;
  bool prev_is_norm() const { return prev_op.rfind("norm.", 0) == 0; }
};

struct LayerSchema {
  int64_t layer = 0;
  std::vector<LinearSpec> linears;   ///< execution order
  std::vector<NormSpec> norms;       ///< execution order
  std::vector<ScalingPair> scaling;  ///< execution order
  MoeSpec moe;                       ///< the MLP's experts, when it has them

  const LinearSpec* find_linear(std::string_view name) const;
  const LinearSpec& linear(std::string_view name) const;  ///< throws naming the layer's linears
  const NormSpec& norm(std::string_view name) const;      ///< throws naming the layer's norms
  std::vector<std::string> linear_names() const;
  std::vector<std::string> norm_names() const;
  /// Linear names grouped by sequential_step, steps in increasing order.
  std::vector<std::vector<std::string>> sequential_steps() const;
  /// The legal pairs whose prev_op is a norm: a scale folded into the norm is undone exactly by
  /// scaling the input columns of every linear that reads it (SmoothQuant's pairs).
  std::vector<ScalingPair> norm_fed_pairs() const;
};

/// q, k, v and a fused qkv: their outputs are the attention matmuls' inputs (bmm-input
/// quantization).
bool is_attention_input(LinearRole role);
/// Linears whose weights only weigh or route (LinearRole::Router): kept float unless a recipe
/// names them; a scale folded into their input is compensated like any reader's.
bool is_router(LinearRole role);
/// q, k: their outputs meet only in q·kᵀ, so their own output error is not what the model sees
/// (llm-awq skips their clip search).
/// q, k and a fused qkv: their outputs meet in q·kᵀ, so their own output error is not what the
/// model sees (llm-awq skips their clip search; a fused qkv holds q and k rows).
bool feeds_attention_scores(LinearRole role);
const char* norm_form_name(NormForm form);

}  // namespace calq::core
