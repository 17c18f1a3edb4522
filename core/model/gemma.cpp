// Gemma 2 / Gemma 3 text forward, op for op as transformers' modeling_gemma2.py and
// modeling_gemma3.py (Gemma2RMSNorm, Gemma2Attention with eager_attention_forward's soft-cap,
// Gemma2DecoderLayer's sandwich norms, Gemma3TextScaledWordEmbedding).
#include "core/model/gemma.h"

#include <cmath>
#include <string>
#include <tuple>
#include <utility>

#include <ATen/ATen.h>
#include <fmt/format.h>

#include "core/error.h"
#include "core/model/attention.h"
#include "core/model/decoder_model.h"
#include "core/model/llama.h"
#include "core/model/rope.h"

namespace calq::core {
namespace {

// Gemma2RMSNorm: x̂ = x / sqrt(mean(x²) + eps) in float32, times (1 + w) in float32, then cast
// (unlike LlamaRMSNorm, which casts before the multiply).
at::Tensor gemma_rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  const at::Tensor xf = x.to(at::kFloat);
  at::Tensor out = xf * xf.pow(2).mean(-1, /*keepdim=*/true).add_(eps).rsqrt_();
  out.mul_(weight.to(at::kFloat) + 1.0);
  return out.scalar_type() == x.scalar_type() ? out : out.to(x.scalar_type());
}

// cap · tanh(x / cap) (Gemma 2's soft-capping); cap 0: x.
at::Tensor soft_cap(at::Tensor x, double cap) {
  if (cap <= 0) return x;
  return (x / cap).tanh_().mul_(cap);
}

enum LinearIndex : size_t { kQ, kK, kV, kO, kGate, kUp, kDown };
enum NormIndex : size_t { kAttnNorm, kPostAttnNorm, kMlpNorm, kPostMlpNorm, kQNorm, kKNorm };

class GemmaLayer final : public NamedDecoderLayer {
 public:
  GemmaLayer(int64_t index, NamedLinears linears, NamedNorms norms, const ModelConfig& c)
      : NamedDecoderLayer(index, std::move(linears), std::move(norms)),
        n_heads_(c.n_heads),
        n_kv_heads_(c.n_kv_heads),
        head_dim_(c.head_dim),
        eps_(c.norm_eps),
        scale_(1.0 / std::sqrt(c.query_pre_attn_scalar)),
        softcap_(c.attn_logit_softcap),
        qk_norm_(c.qk_norm),
        windowed_(c.sliding_layers.empty() || c.sliding_layers[size_t(index)]) {}

  at::Tensor forward(const at::Tensor& x, const ForwardContext& ctx) override {
    // Gemma2DecoderLayer: x + post_attn(attn(norm.attn(x))), then + post_mlp(mlp(norm.mlp(.))).
    at::Tensor attn = attention(gemma_rms_norm(x, norm_at(kAttnNorm).weight, eps_), ctx);
    at::Tensor out = gemma_rms_norm(attn, norm_at(kPostAttnNorm).weight, eps_).add_(x);
    at::Tensor m = mlp(gemma_rms_norm(out, norm_at(kMlpNorm).weight, eps_), ctx);
    return add_residual(out, gemma_rms_norm(m, norm_at(kPostMlpNorm).weight, eps_));
  }

  // Gemma2Attention alone (o included, post-norm not: what AutoAWQ inspects as self_attn).
  at::Tensor attention(const at::Tensor& h, const ForwardContext& ctx) override {
    const int64_t batch = h.size(0), seq = h.size(1);
    observe(kQ, h, ctx);
    observe(kK, h, ctx);
    observe(kV, h, ctx);
    at::Tensor q = at(kQ).forward(h).view({batch, seq, n_heads_, head_dim_});
    at::Tensor k = at(kK).forward(h).view({batch, seq, n_kv_heads_, head_dim_});
    const at::Tensor v = at(kV).forward(h).view({batch, seq, n_kv_heads_, head_dim_});
    if (qk_norm_) {  // Gemma3Attention: q_norm / k_norm, (1 + w), before RoPE
      q = gemma_rms_norm(q, norm_at(kQNorm).weight, eps_);
      k = gemma_rms_norm(k, norm_at(kKNorm).weight, eps_);
    }
    const bool local = windowed_ && ctx.local_rope_cos.defined();
    const at::Tensor& cos_table = local ? ctx.local_rope_cos : ctx.rope_cos;
    const at::Tensor& sin_table = local ? ctx.local_rope_sin : ctx.rope_sin;
    const at::Tensor cos = cos_table.view({seq, 1, head_dim_});
    const at::Tensor sin = sin_table.view({seq, 1, head_dim_});
    q = apply_rope(q, cos, sin);
    k = apply_rope(k, cos, sin);
    const at::Tensor& mask = windowed_ && ctx.window_mask.defined() ? ctx.window_mask : ctx.causal_mask;
    return apply(kO, layer_attention(ctx, index_, q, k, v, scale_, mask, softcap_), ctx);
  }

  // Gemma2MLP: down(gelu_tanh(gate(h)) ⊙ up(h)).
  at::Tensor mlp(const at::Tensor& h, const ForwardContext& ctx) override {
    observe(kGate, h, ctx);
    observe(kUp, h, ctx);
    const at::Tensor gated = at::gelu(at(kGate).forward(h), "tanh") * at(kUp).forward(h);
    return apply(kDown, gated, ctx);
  }

 private:
  int64_t n_heads_, n_kv_heads_, head_dim_;
  double eps_, scale_, softcap_;
  bool qk_norm_, windowed_;
};

class GemmaModel final : public DecoderModel {
 public:
  GemmaModel(ModelConfig config, std::shared_ptr<const WeightSource> weights,
             const LoadOptions& options)
      : DecoderModel(std::move(config), std::move(weights), options) {
    const ModelConfig& c = config_;
    norm_ = load(c.weight_prefix + "model.norm.weight", {c.hidden_size});
    require_finite_tensor(c.weight_prefix + "model.norm.weight", norm_);
    rope_ = rope_frequencies(c.rope, c.head_dim, c.max_positions, device_obj_);
    if (c.rope_local) rope_local_ = rope_frequencies(*c.rope_local, c.head_dim, c.max_positions, device_obj_);
  }

  void release_embeddings() override { embed_ = at::Tensor(); }

  // Gemma3TextScaledWordEmbedding: rows × sqrt(hidden), the scale a float32 scalar cast to the
  // compute dtype (transformers casts it to the weights' dtype).
  at::Tensor embed(const at::Tensor& ids, int64_t /*past*/) override {
    if (!embed_.defined())
      embed_ = load_stored(config_.weight_prefix + "model.embed_tokens.weight",
                           {config_.vocab_size, config_.hidden_size});
    const at::Tensor rows = at::embedding(embed_, check_ids(ids)).to(compute_dtype_);
    const at::Tensor scale =
        at::scalar_tensor(std::sqrt(double(config_.hidden_size)), rows.options().dtype(at::kFloat))
            .to(compute_dtype_);
    return rows * scale;
  }

  ForwardContext make_context(int64_t seq_len, int64_t past) const override {
    ForwardContext ctx;
    ctx.seq_len = seq_len;
    ctx.past = past;
    std::tie(ctx.rope_cos, ctx.rope_sin) =
        rope_tables(config_.rope, rope_, config_.head_dim, seq_len, compute_dtype_, past);
    if (config_.rope_local)
      std::tie(ctx.local_rope_cos, ctx.local_rope_sin) = rope_tables(
          *config_.rope_local, rope_local_, config_.head_dim, seq_len, compute_dtype_, past);
    ctx.causal_mask = causal_mask(seq_len, past);
    ctx.window_mask = causal_mask(seq_len, past, config_.sliding_window.value_or(0));
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
    const at::Tensor normed = gemma_rms_norm(hidden, norm_, config_.norm_eps);
    return soft_cap(Linear{head_, {}}.forward(normed), config_.final_logit_softcap).to(at::kFloat);
  }

 protected:
  std::unique_ptr<DecoderLayer> build_layer(int64_t i) override {
    const LayerSchema& schema = layer_schema(i);
    return std::make_unique<GemmaLayer>(i, load_linears(schema), load_norms(schema), config_);
  }

  LayerSchema build_schema(int64_t i) const override { return gemma_layer_schema(config_, i); }

 private:
  at::Tensor embed_, norm_, head_;
  RopeFrequencies rope_, rope_local_;
};

}  // namespace

LayerSchema gemma_layer_schema(const ModelConfig& c, int64_t i) {
  // The Llama linears, steps and scaling pairs (the same block shape: GQA attention, gated MLP;
  // GeGLU is gated like SwiGLU, so up → down stays legal); Gemma's own norms.
  ModelConfig llama_like = c;
  llama_like.qk_norm = false;
  LayerSchema s = llama_layer_schema(llama_like, i);
  const std::string p = c.weight_prefix + fmt::format("model.layers.{}.", i);
  const int64_t H = c.hidden_size;
  const NormForm f = NormForm::RmsOnePlus;
  s.norms = {  // order = NormIndex
      {"norm.attn", p + "input_layernorm", f, NormSite::PreAttention, H},
      {"norm.post_attn", p + "post_attention_layernorm", f, NormSite::PostAttention, H},
      {"norm.mlp", p + "pre_feedforward_layernorm", f, NormSite::PreMlp, H},
      {"norm.post_mlp", p + "post_feedforward_layernorm", f, NormSite::PostMlp, H},
  };
  if (c.qk_norm) {
    s.norms.push_back({"norm.q", p + "self_attn.q_norm", f, NormSite::QueryHeads, c.head_dim});
    s.norms.push_back({"norm.k", p + "self_attn.k_norm", f, NormSite::KeyHeads, c.head_dim});
  }
  return s;
}

std::unique_ptr<Model> make_gemma_model(ModelConfig config,
                                        std::shared_ptr<const WeightSource> weights,
                                        const LoadOptions& options) {
  CALQ_ASSERT(config.family == Family::Gemma, "make_gemma_model given {}", config.model_type);
  return std::make_unique<GemmaModel>(std::move(config), std::move(weights), options);
}

}  // namespace calq::core
