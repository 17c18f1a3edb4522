// GPT-2 forward, as transformers 5 modeling_gpt2.py (GPT2Block, GPT2Attention with
// scale_attn_weights, GPT2MLP with NewGELUActivation).
#include "core/model/gpt2.h"

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <fmt/format.h>

#include "core/error.h"
#include "core/model/attention.h"
#include "core/model/decoder_model.h"

namespace calq::core {
namespace {

/// The checkpoint's tensor-name prefix: "transformer." (GPT2LMHeadModel) or "" (OpenAI-converted
/// checkpoints).
std::string gpt2_prefix(const WeightSource& weights) {
  return weights.contains("transformer.wte.weight") ? "transformer." : "";
}

// Positions in the schema's lists (build_schema below).
enum LinearIndex : size_t { kQ, kK, kV, kO, kFc1, kFc2 };
enum NormIndex : size_t { kAttnNorm, kMlpNorm };

at::Tensor layer_norm(const at::Tensor& x, const Norm& norm, double eps) {
  return at::layer_norm(x, {x.size(-1)}, norm.weight, norm.bias, eps);
}

class Gpt2Layer final : public NamedDecoderLayer {
 public:
  Gpt2Layer(int64_t index, NamedLinears linears, NamedNorms norms, const ModelConfig& config)
      : NamedDecoderLayer(index, std::move(linears), std::move(norms)),
        n_heads_(config.n_heads),
        head_dim_(config.head_dim),
        eps_(config.norm_eps),
        // gelu_new = NewGELUActivation, the tanh approximation; "gelu" = exact erf GELU.
        gelu_approximate_(config.activation == "gelu_new" ? "tanh" : "none") {}

  at::Tensor forward(const at::Tensor& x, const ForwardContext& ctx) override {
    // ln_1, attention, residual; ln_2, MLP, residual (GPT2Block).
    at::Tensor out = attention(layer_norm(x, norm_at(kAttnNorm), eps_), ctx).add_(x);
    return add_residual(out, mlp(layer_norm(out, norm_at(kMlpNorm), eps_), ctx));
  }

  at::Tensor attention(const at::Tensor& h, const ForwardContext& ctx) override {
    const int64_t batch = h.size(0), seq = h.size(1);
    observe(kQ, h, ctx);
    observe(kK, h, ctx);
    observe(kV, h, ctx);
    const at::Tensor q = at(kQ).forward(h).view({batch, seq, n_heads_, head_dim_});
    const at::Tensor k = at(kK).forward(h).view({batch, seq, n_heads_, head_dim_});
    const at::Tensor v = at(kV).forward(h).view({batch, seq, n_heads_, head_dim_});
    const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim_));  // scale_attn_weights
    const at::Tensor attn = layer_attention(ctx, index_, q, k, v, scale, ctx.causal_mask);
    return apply(kO, attn, ctx);  // attn.c_proj
  }

  at::Tensor mlp(const at::Tensor& h, const ForwardContext& ctx) override {
    at::Tensor hidden = apply(kFc1, h, ctx);
    if (at::GradMode::is_enabled() && hidden.requires_grad()) {
      hidden = at::gelu(hidden, gelu_approximate_);  // autograd: gelu's backward needs its input
    } else {
      at::gelu_(hidden, gelu_approximate_);
    }
    return apply(kFc2, hidden, ctx);
  }

 private:
  int64_t n_heads_, head_dim_;
  double eps_;
  std::string gelu_approximate_;
};

class Gpt2Model final : public DecoderModel {
 public:
  Gpt2Model(ModelConfig config,
            std::shared_ptr<const WeightSource> weights,
            const LoadOptions& options)
      : DecoderModel(std::move(config), std::move(weights), options) {
    const ModelConfig& c = config_;
    prefix_ = gpt2_prefix(*weights_);
    embed_ = load(prefix_ + "wte.weight", {c.vocab_size, c.hidden_size});
    positions_ = load(prefix_ + "wpe.weight", {c.max_positions, c.hidden_size});
    final_norm_ = load_norm(prefix_ + "ln_f", c.hidden_size, true);
    head_ = c.tie_word_embeddings ? embed_ : load("lm_head.weight", {c.vocab_size, c.hidden_size});
    require_finite_tensor(c.tie_word_embeddings ? prefix_ + "wte.weight" : "lm_head.weight", head_);
    require_finite_tensor(final_norm_.source + ".weight", final_norm_.weight);
    require_finite_tensor(final_norm_.source + ".bias", final_norm_.bias);
  }

  at::Tensor embed(const at::Tensor& ids, int64_t past) override {
    const at::Tensor checked = check_ids(ids);
    const int64_t seq = checked.size(1);
    CALQ_CHECK(past + seq <= config_.max_positions,
               "{}: {} tokens exceed n_positions {}; expected at most that many", path_,
               past + seq, config_.max_positions);
    return at::embedding(embed_, checked) + positions_.narrow(0, past, seq);  // wpe rows past..
  }

  ForwardContext make_context(int64_t seq_len, int64_t past) const override {
    ForwardContext ctx;
    ctx.seq_len = seq_len;
    ctx.past = past;
    ctx.causal_mask = causal_mask(seq_len, past);
    return ctx;
  }

  at::Tensor logits(const at::Tensor& hidden) override {
    return project_logits(layer_norm(hidden, final_norm_, config_.norm_eps), head_);
  }

 protected:
  std::unique_ptr<DecoderLayer> build_layer(int64_t i) override {
    const LayerSchema& schema = layer_schema(i);
    const int64_t E = config_.hidden_size;
    const std::string p = fmt::format("{}h.{}.", prefix_, i);
    // c_attn: Conv1D weight [E, 3E] -> [3E, E]; output rows [0,E) q, [E,2E) k, [2E,3E) v.
    const at::Tensor qkv_w = load(p + "attn.c_attn.weight", {E, 3 * E}).t();
    const at::Tensor qkv_b = load(p + "attn.c_attn.bias", {3 * E});
    NamedDecoderLayer::NamedLinears linears;
    for (const LinearSpec& l : schema.linears) {
      if (l.checkpoint.empty()) {  // q, k, v: their rows of c_attn, in that order
        const int64_t part = static_cast<int64_t>(linears.size());
        linears.emplace_back(l.name, Linear{qkv_w.narrow(0, part * E, E).clone(),
                                            qkv_b.narrow(0, part * E, E).clone()});
      } else {
        linears.emplace_back(l.name, load_conv1d(l.checkpoint, l.in, l.out));
      }
    }
    return std::make_unique<Gpt2Layer>(i, std::move(linears), load_norms(schema), config_);
  }

  LayerSchema build_schema(int64_t i) const override {
    return gpt2_layer_schema(config_, *weights_, i);
  }

 private:
  // Conv1D stores weight [in, out] (y = x W + b); calq's Linear wants [out, in].
  Linear load_conv1d(const std::string& prefix, int64_t in, int64_t out) const {
    return Linear{load(prefix + ".weight", {in, out}).t().contiguous(),
                  load(prefix + ".bias", {out})};
  }

  std::string prefix_;    // "transformer." or ""
  at::Tensor embed_;      // wte [V, E]
  at::Tensor positions_;  // wpe [n_positions, E]
  Norm final_norm_;       // ln_f
  at::Tensor head_;       // [V, E], embed_ itself when tied
};

}  // namespace

LayerSchema gpt2_layer_schema(const ModelConfig& c, const WeightSource& weights, int64_t i) {
  const std::string prefix = gpt2_prefix(weights);
  const std::string p = fmt::format("{}h.{}.", prefix, i);
  const int64_t E = c.hidden_size, F = c.intermediate_size;
  using R = LinearRole;
  LayerSchema s;
  s.layer = i;
  // Order = LinearIndex; q, k, v are stored fused in attn.c_attn (no checkpoint of their own).
  s.linears = {
      {"attn.q", "", R::Query, E, E, true, 0, "norm.attn"},
      {"attn.k", "", R::Key, E, E, true, 0, "norm.attn"},
      {"attn.v", "", R::Value, E, E, true, 0, "norm.attn"},
      {"attn.o", p + "attn.c_proj", R::Output, E, E, true, 1, ""},
      {"mlp.fc1", p + "mlp.c_fc", R::MlpIn, F, E, true, 2, "norm.mlp"},
      {"mlp.fc2", p + "mlp.c_proj", R::Down, E, F, true, 3, ""},
  };
  s.norms = {  // order = NormIndex
      {"norm.attn", p + "ln_1", NormForm::Layer, NormSite::PreAttention, E},
      {"norm.mlp", p + "ln_2", NormForm::Layer, NormSite::PreMlp, E},
  };
  // docs/algorithms.md §4.1, derived: norm.mlp → fc1 inspects the whole MLP so the loss sees the
  // GELU and fc2 that follow.
  s.scaling = {
      {"norm.attn", {"attn.q", "attn.k", "attn.v"}, Inspect::Attention, "", ""},
      {"attn.v", {"attn.o"}, Inspect::Linear, "attn.o", ""},
      {"norm.mlp", {"mlp.fc1"}, Inspect::Mlp, "", ""},
      {"mlp.fc1", {"mlp.fc2"}, Inspect::Linear, "mlp.fc2",
       "GELU is not positively homogeneous, so a scale cannot move across it (the references "
       "insert a runtime ScaledActivation that no checkpoint format holds)"},
  };
  return s;
}

std::unique_ptr<Model> make_gpt2_model(ModelConfig config,
                                       std::shared_ptr<const WeightSource> weights,
                                       const LoadOptions& options) {
  CALQ_ASSERT(config.family == Family::Gpt2, "make_gpt2_model given {}", config.model_type);
  return std::make_unique<Gpt2Model>(std::move(config), std::move(weights), options);
}

}  // namespace calq::core
