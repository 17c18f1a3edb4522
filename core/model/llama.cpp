// Llama / Mistral / Qwen2 forward, matched op for op to transformers 5 (modeling_llama.py):
// the same dtype casts, the same op order, so float32 logits agree to ~1e-6.
#include "core/model/llama.h"

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <fmt/format.h>

#include "core/error.h"
#include "core/model/attention.h"
#include "core/model/decoder_model.h"

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

// transformers apply_rotary_pos_emb: x·cos + rotate_half(x)·sin, rotate_half(x) =
// cat(-x[.., hd/2:], x[.., :hd/2]). x [B, S, n, hd]; cos, sin [S, 1, hd]. Written as
// x·cos, then += (∓ the other half)·sin per half: the same products and sums (negation is
// exact), without materialising rotate_half.
at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  const int64_t half = x.size(-1) / 2;
  at::Tensor out = x * cos;
  out.narrow(-1, 0, half).addcmul_(x.narrow(-1, half, half), sin.narrow(-1, 0, half), -1);
  out.narrow(-1, half, half).addcmul_(x.narrow(-1, 0, half), sin.narrow(-1, half, half), 1);
  return out;
}

enum LinearIndex : size_t { kQ, kK, kV, kO, kGate, kUp, kDown };

class LlamaLayer final : public NamedDecoderLayer {
 public:
  LlamaLayer(int64_t index,
             std::vector<std::pair<std::string, Linear>> linears,
             Norm attn_norm,
             Norm mlp_norm,
             const ModelConfig& config)
      : NamedDecoderLayer(index, std::move(linears), std::move(attn_norm), std::move(mlp_norm)),
        n_heads_(config.n_heads),
        n_kv_heads_(config.n_kv_heads),
        head_dim_(config.head_dim),
        eps_(config.norm_eps) {}

  at::Tensor forward(const at::Tensor& x, const ForwardContext& ctx) override {
    CALQ_ASSERT(x.size(1) == ctx.seq_len, "layer {}: input has {} positions, context {}", index_,
                x.size(1), ctx.seq_len);
    // LlamaDecoderLayer: residual + self_attn(input_layernorm(x)), then residual + mlp(...).
    at::Tensor out = attention(rms_norm(x, attn_norm_.weight, eps_), ctx).add_(x);  // x + o exactly
    return add_residual(out, mlp(rms_norm(out, mlp_norm_.weight, eps_), ctx));
  }

  at::Tensor attention(const at::Tensor& h, const ForwardContext& ctx) override {
    const int64_t batch = h.size(0), seq = h.size(1);
    observe(kQ, h, ctx);
    observe(kK, h, ctx);
    observe(kV, h, ctx);
    at::Tensor q = at(kQ).forward(h).view({batch, seq, n_heads_, head_dim_});
    at::Tensor k = at(kK).forward(h).view({batch, seq, n_kv_heads_, head_dim_});
    const at::Tensor v = at(kV).forward(h).view({batch, seq, n_kv_heads_, head_dim_});
    const at::Tensor cos = ctx.rope_cos.view({seq, 1, head_dim_});
    const at::Tensor sin = ctx.rope_sin.view({seq, 1, head_dim_});
    q = apply_rope(q, cos, sin);
    k = apply_rope(k, cos, sin);
    const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim_));  // hd^-0.5
    return apply(kO, causal_attention(q, k, v, scale, ctx.causal_mask), ctx);
  }

  // LlamaMLP: down(silu(gate(h)) ⊙ up(h)).
  at::Tensor mlp(const at::Tensor& h, const ForwardContext& ctx) override {
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
};

class LlamaModel final : public DecoderModel {
 public:
  LlamaModel(ModelConfig config,
             std::shared_ptr<const WeightSource> weights,
             const LoadOptions& options)
      : DecoderModel(std::move(config), std::move(weights), options) {
    const ModelConfig& c = config_;
    norm_ = load("model.norm.weight", {c.hidden_size});
    require_finite_tensor("model.norm.weight", norm_);
    // LlamaRotaryEmbedding (default rope): inv_freq = 1 / θ^(arange(0, hd, 2) / hd), float32.
    const auto f32 = at::TensorOptions().device(device_obj_).dtype(at::kFloat);
    const at::Tensor exponent =
        at::arange(0, c.head_dim, 2, f32.dtype(at::kLong)).to(at::kFloat) / c.head_dim;
    inv_freq_ = at::reciprocal(at::pow(c.rope_theta, exponent));
  }

  // The embedding table stays in the stored dtype and only gathered rows are converted (the same
  // values as converting the table: the cast is element-wise); the head is read on first use.
  // A quantization run then never holds a [V, H] compute-dtype copy: for a 7B-shaped model with
  // an untied head that is 1 GB of float32.
  void release_embeddings() override { embed_ = at::Tensor(); }

  at::Tensor embed(const at::Tensor& ids) override {
    if (!embed_.defined())
      embed_ = load_stored("model.embed_tokens.weight", {config_.vocab_size, config_.hidden_size});
    return at::embedding(embed_, check_ids(ids)).to(compute_dtype_);
  }

  ForwardContext make_context(int64_t seq_len) const override {
    ForwardContext ctx;
    ctx.seq_len = seq_len;
    // freqs = positions ⊗ inv_freq in float32, emb = cat(freqs, freqs); cos/sin cast to the
    // compute dtype (LlamaRotaryEmbedding.forward).
    const at::Tensor positions = at::arange(seq_len, inv_freq_.options());
    const at::Tensor freqs = at::outer(positions, inv_freq_);
    const at::Tensor emb = at::cat({freqs, freqs}, -1);
    ctx.rope_cos = emb.cos().to(compute_dtype_);
    ctx.rope_sin = emb.sin().to(compute_dtype_);
    ctx.causal_mask = causal_mask(seq_len, config_.sliding_window.value_or(0));
    return ctx;
  }

  at::Tensor logits(const at::Tensor& hidden) override {
    if (!head_.defined()) {
      const ModelConfig& c = config_;
      const char* name = c.tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight";
      head_ = load(name, {c.vocab_size, c.hidden_size});
      require_finite_tensor(name, head_);
    }
    return project_logits(rms_norm(hidden, norm_, config_.norm_eps), head_);
  }

 protected:
  std::unique_ptr<DecoderLayer> build_layer(int64_t i) override {
    const ModelConfig& c = config_;
    const std::string p = fmt::format("model.layers.{}.", i);
    const int64_t H = c.hidden_size, I = c.intermediate_size;
    const int64_t q_out = c.n_heads * c.head_dim, kv_out = c.n_kv_heads * c.head_dim;
    std::vector<std::pair<std::string, Linear>> linears;
    linears.emplace_back("attn.q", load_linear(p + "self_attn.q_proj", q_out, H, c.attention_bias));
    linears.emplace_back("attn.k",
                         load_linear(p + "self_attn.k_proj", kv_out, H, c.attention_bias));
    linears.emplace_back("attn.v",
                         load_linear(p + "self_attn.v_proj", kv_out, H, c.attention_bias));
    linears.emplace_back("attn.o", load_linear(p + "self_attn.o_proj", H, q_out, c.o_bias));
    linears.emplace_back("mlp.gate", load_linear(p + "mlp.gate_proj", I, H, c.mlp_bias));
    linears.emplace_back("mlp.up", load_linear(p + "mlp.up_proj", I, H, c.mlp_bias));
    linears.emplace_back("mlp.down", load_linear(p + "mlp.down_proj", H, I, c.mlp_bias));
    Norm attn_norm = load_norm(p + "input_layernorm", H, false);
    Norm mlp_norm = load_norm(p + "post_attention_layernorm", H, false);
    return std::make_unique<LlamaLayer>(i, std::move(linears), std::move(attn_norm),
                                        std::move(mlp_norm), c);
  }

 private:
  at::Tensor embed_;     // [V, H] in the stored dtype, read on first use
  at::Tensor norm_;      // [H]
  at::Tensor head_;      // [V, H] in the compute dtype, read on first use
  at::Tensor inv_freq_;  // [hd/2] float32
};

}  // namespace

std::unique_ptr<Model> make_llama_model(ModelConfig config,
                                        std::shared_ptr<const WeightSource> weights,
                                        const LoadOptions& options) {
  CALQ_ASSERT(config.family == Family::Llama, "make_llama_model given {}", config.model_type);
  return std::make_unique<LlamaModel>(std::move(config), std::move(weights), options);
}

}  // namespace calq::core
