// Llama / Mistral / Qwen2 / Qwen3 forward, matched op for op to transformers 5 (modeling_llama.py):
// the same dtype casts, the same op order, so float32 logits agree to ~1e-6.
#include "core/model/llama.h"

#include <ATen/core/grad_mode.h>
#include <cmath>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <fmt/format.h>

#include "core/error.h"
#include "core/model/attention.h"
#include "core/model/decoder_model.h"
#include "core/model/moe.h"
#include "core/model/rope.h"

namespace calq::core {

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  const at::Tensor xf = x.to(at::kFloat);
  const at::Tensor variance = xf.pow(2).mean(-1, /*keepdim=*/true);
  at::Tensor normed = xf * variance.add_(eps).rsqrt_();
  if (x.scalar_type() != at::kFloat)
    normed = normed.to(x.scalar_type());
  return normed.mul_(weight);  // = weight * normed: one rounding either way
}

namespace {

// Positions in the schema's lists (llama_layer_schema below).
enum LinearIndex : size_t { kQ, kK, kV, kO, kGate, kUp, kDown };
enum NormIndex : size_t { kAttnNorm, kMlpNorm, kQNorm, kKNorm };  // q/k: only with qk_norm

class LlamaLayer final : public NamedDecoderLayer {
 public:
  LlamaLayer(int64_t index, NamedLinears linears, NamedNorms norms, const ModelConfig& config,
             const MoeSpec& moe)
      : NamedDecoderLayer(index, std::move(linears), std::move(norms)),
        n_heads_(config.n_heads),
        n_kv_heads_(config.n_kv_heads),
        head_dim_(config.head_dim),
        eps_(config.norm_eps),
        qk_norm_(config.qk_norm),
        moe_(moe),
        moe_index_(MoeIndex::of(moe, kGate)) {}

  at::Tensor forward(const at::Tensor& x, const ForwardContext& ctx) override {
    CALQ_ASSERT(x.size(1) == ctx.seq_len, "layer {}: input has {} positions, context {}", index_,
                x.size(1), ctx.seq_len);
    // LlamaDecoderLayer: residual + self_attn(input_layernorm(x)), then residual + mlp(...).
    at::Tensor out = attention(rms_norm(x, norm_at(kAttnNorm).weight, eps_), ctx).add_(x);  // x + o
    return add_residual(out, mlp(rms_norm(out, norm_at(kMlpNorm).weight, eps_), ctx));
  }

  at::Tensor attention(const at::Tensor& h, const ForwardContext& ctx) override {
    const int64_t batch = h.size(0), seq = h.size(1);
    observe(kQ, h, ctx);
    observe(kK, h, ctx);
    observe(kV, h, ctx);
    at::Tensor q = at(kQ).forward(h).view({batch, seq, n_heads_, head_dim_});
    at::Tensor k = at(kK).forward(h).view({batch, seq, n_kv_heads_, head_dim_});
    if (qk_norm_) {  // Qwen3Attention: q_norm / k_norm over each head's head_dim, before RoPE
      q = rms_norm(q, norm_at(kQNorm).weight, eps_);
      k = rms_norm(k, norm_at(kKNorm).weight, eps_);
    }
    const at::Tensor v = at(kV).forward(h).view({batch, seq, n_kv_heads_, head_dim_});
    const at::Tensor cos = ctx.rope_cos.view({seq, 1, head_dim_});
    const at::Tensor sin = ctx.rope_sin.view({seq, 1, head_dim_});
    q = apply_rope(q, cos, sin);
    k = apply_rope(k, cos, sin);
    const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim_));  // hd^-0.5
    return apply(kO, layer_attention(ctx, index_, q, k, v, scale, ctx.causal_mask), ctx);
  }

  // LlamaMLP: down(silu(gate(h)) ⊙ up(h)); a sparse layer's experts in core/model/moe.cpp.
  at::Tensor mlp(const at::Tensor& h, const ForwardContext& ctx) override {
    if (moe_.active()) {
      const MoeLinears linears{
          [this, &ctx](size_t k, const at::Tensor& x) { return apply(k, x, ctx); },
          [this, &ctx](size_t k, const at::Tensor& x) { observe(k, x, ctx); },
          [this](size_t k) -> const Linear& { return at(k); }};
      return moe_mlp_forward(moe_, moe_index_, linears, h, ctx);
    }
    observe(kGate, h, ctx);
    observe(kUp, h, ctx);
    at::Tensor gated = at(kGate).forward(h);
    if (at::GradMode::is_enabled() && gated.requires_grad()) {
      // Autograd (LKD, QAT): silu's and mul's backward need their inputs unmodified.
      gated = at::silu(gated) * at(kUp).forward(h);
    } else {
      at::silu_(gated);
      gated.mul_(at(kUp).forward(h));
    }
    return apply(kDown, gated, ctx);
  }

 private:
  int64_t n_heads_, n_kv_heads_, head_dim_;
  double eps_;
  bool qk_norm_;
  MoeSpec moe_;  // experts of a sparse layer; inactive for a dense MLP
  MoeIndex moe_index_;
};

class LlamaModel final : public DecoderModel {
 public:
  LlamaModel(ModelConfig config,
             std::shared_ptr<const WeightSource> weights,
             const LoadOptions& options)
      : DecoderModel(std::move(config), std::move(weights), options) {
    const ModelConfig& c = config_;
    norm_ = load(c.weight_prefix + "model.norm.weight", {c.hidden_size});
    require_finite_tensor(c.weight_prefix + "model.norm.weight", norm_);
    // LlamaRotaryEmbedding's inv_freq (core/model/rope.cpp); recomputed per window only for the
    // types whose frequencies depend on its length (dynamic, longrope).
    rope_ = rope_frequencies(c.rope, c.head_dim, c.max_positions, device_obj_);
  }

  // The embedding table stays in the stored dtype and only gathered rows are converted (the same
  // values as converting the table: the cast is element-wise); the head is read on first use.
  // A quantization run then never holds a [V, H] compute-dtype copy: for a 7B-shaped model with
  // an untied head that is 1 GB of float32.
  void release_embeddings() override { embed_ = at::Tensor(); }

  at::Tensor embed(const at::Tensor& ids, int64_t /*past*/) override {
    if (!embed_.defined())
      embed_ = load_stored(config_.weight_prefix + "model.embed_tokens.weight",
                           {config_.vocab_size, config_.hidden_size});
    return at::embedding(embed_, check_ids(ids)).to(compute_dtype_);
  }

  ForwardContext make_context(int64_t seq_len, int64_t past) const override {
    ForwardContext ctx;
    ctx.seq_len = seq_len;
    ctx.past = past;
    // freqs = positions ⊗ inv_freq in float32, emb = cat(freqs, freqs); cos/sin cast to the
    // compute dtype (LlamaRotaryEmbedding.forward).
    std::tie(ctx.rope_cos, ctx.rope_sin) =
        rope_tables(config_.rope, rope_, config_.head_dim, seq_len, compute_dtype_, past);
    ctx.causal_mask = causal_mask(seq_len, past, config_.sliding_window.value_or(0));
    return ctx;
  }

  at::Tensor logits(const at::Tensor& hidden) override {
    if (!head_.defined()) {
      const ModelConfig& c = config_;
      const std::string name =
          c.weight_prefix + (c.tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight");
      head_ = load(name, {c.vocab_size, c.hidden_size});
      require_finite_tensor(name, head_);
    }
    return project_logits(rms_norm(hidden, norm_, config_.norm_eps), head_);
  }

 protected:
  std::unique_ptr<DecoderLayer> build_layer(int64_t i) override {
    const LayerSchema& schema = layer_schema(i);
    return std::make_unique<LlamaLayer>(i, load_linears(schema), load_norms(schema), config_,
                                        schema.moe);
  }

  LayerSchema build_schema(int64_t i) const override { return llama_layer_schema(config_, i); }

 private:
  at::Tensor embed_;     // [V, H] in the stored dtype, read on first use
  at::Tensor norm_;      // [H]
  at::Tensor head_;      // [V, H] in the compute dtype, read on first use
  RopeFrequencies rope_;  // inv_freq [hd/2] float32 for windows of any length up to max_positions
};

}  // namespace

LayerSchema llama_layer_schema(const ModelConfig& c, int64_t i) {
  const std::string p = c.weight_prefix + fmt::format("model.layers.{}.", i);
  const int64_t H = c.hidden_size, I = c.intermediate_size;
  const int64_t q_out = c.n_heads * c.head_dim, kv_out = c.n_kv_heads * c.head_dim;
  using R = LinearRole;
  LayerSchema s;
  s.layer = i;
  // Order = LinearIndex. Steps: q,k,v → o → gate,up → down (llama_sequential).
  s.linears = {
      {"attn.q", p + "self_attn.q_proj", R::Query, q_out, H, c.attention_bias, 0, "norm.attn"},
      {"attn.k", p + "self_attn.k_proj", R::Key, kv_out, H, c.attention_bias, 0, "norm.attn"},
      {"attn.v", p + "self_attn.v_proj", R::Value, kv_out, H, c.attention_bias, 0, "norm.attn"},
      {"attn.o", p + "self_attn.o_proj", R::Output, H, q_out, c.o_bias, 1, ""},
  };
  const bool sparse = c.moe.sparse(i);
  if (!sparse) {
    s.linears.push_back({"mlp.gate", p + "mlp.gate_proj", R::Gate, I, H, c.mlp_bias, 2, "norm.mlp"});
    s.linears.push_back({"mlp.up", p + "mlp.up_proj", R::Up, I, H, c.mlp_bias, 2, "norm.mlp"});
    s.linears.push_back({"mlp.down", p + "mlp.down_proj", R::Down, H, I, c.mlp_bias, 3, ""});
  }
  s.norms = {  // order = NormIndex
      {"norm.attn", p + "input_layernorm", NormForm::Rms, NormSite::PreAttention, H},
      {"norm.mlp", p + "post_attention_layernorm", NormForm::Rms, NormSite::PreMlp, H},
  };
  if (c.qk_norm) {  // Qwen3: γ over head_dim, shared by every head; no linear reads them
    s.norms.push_back({"norm.q", p + "self_attn.q_norm", NormForm::Rms, NormSite::QueryHeads, c.head_dim});
    s.norms.push_back({"norm.k", p + "self_attn.k_norm", NormForm::Rms, NormSite::KeyHeads, c.head_dim});
  }
  // docs/algorithms.md §4.1. v → o: o's input columns are v's output rows, head by head (attention
  // mixes positions, never channels); with grouped-query attention v has fewer rows than o has
  // columns, which the AWQ pass checks. up → down: act(gate) ⊙ (up / s) = (act(gate) ⊙ up) / s.
  s.scaling = {
      {"norm.attn", {"attn.q", "attn.k", "attn.v"}, Inspect::Attention, "", ""},
      {"attn.v", {"attn.o"}, Inspect::Linear, "attn.o", ""},
  };
  if (sparse) {
    append_moe_mlp(c, i, p, s);  // Mixtral, Qwen2-MoE, Qwen3-MoE (core/model/moe.cpp)
  } else {
    s.scaling.push_back({"norm.mlp", {"mlp.gate", "mlp.up"}, Inspect::Mlp, "", ""});
    s.scaling.push_back({"mlp.up", {"mlp.down"}, Inspect::Linear, "mlp.down", ""});
  }
  return s;
}

std::unique_ptr<Model> make_llama_model(ModelConfig config,
                                        std::shared_ptr<const WeightSource> weights,
                                        const LoadOptions& options) {
  CALQ_ASSERT(config.family == Family::Llama, "make_llama_model given {}", config.model_type);
  return std::make_unique<LlamaModel>(std::move(config), std::move(weights), options);
}

}  // namespace calq::core
