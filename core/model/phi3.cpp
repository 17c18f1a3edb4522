// Phi-3 forward, op for op as transformers' models/phi3/modeling_phi3.py (Phi3Attention,
// Phi3MLP, Phi3DecoderLayer, Phi3RMSNorm = LlamaRMSNorm): the fused projections are computed as
// stored and their outputs sliced, so float32 logits agree with transformers to float32 noise.
#include "core/model/phi3.h"

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

enum LinearIndex : size_t { kQkv, kO, kGateUp, kDown };
enum NormIndex : size_t { kAttnNorm, kMlpNorm };

// apply_rotary_pos_emb in modeling_phi3.py: the first rotary_dim channels rotate (cos, sin are
// [S, 1, rotary_dim]), the rest pass through unchanged and are concatenated after them.
at::Tensor apply_partial_rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  const int64_t rotary_dim = cos.size(-1), head_dim = x.size(-1);
  if (rotary_dim == head_dim) return apply_rope(x, cos, sin);
  return at::cat({apply_rope(x.narrow(-1, 0, rotary_dim), cos, sin),
                  x.narrow(-1, rotary_dim, head_dim - rotary_dim)},
                 -1);
}

class Phi3Layer final : public NamedDecoderLayer {
 public:
  Phi3Layer(int64_t index, NamedLinears linears, NamedNorms norms, const ModelConfig& c)
      : NamedDecoderLayer(index, std::move(linears), std::move(norms)),
        n_heads_(c.n_heads),
        n_kv_heads_(c.n_kv_heads),
        head_dim_(c.head_dim),
        rotary_dim_(c.rope.rotary_dim(c.head_dim)),
        intermediate_(c.intermediate_size),
        eps_(c.norm_eps) {}

  at::Tensor forward(const at::Tensor& x, const ForwardContext& ctx) override {
    CALQ_ASSERT(x.size(1) == ctx.seq_len, "layer {}: input has {} positions, context {}", index_,
                x.size(1), ctx.seq_len);
    // Phi3DecoderLayer: residual + self_attn(input_layernorm(x)), then residual + mlp(...)
    // (dropouts are the identity in eval).
    at::Tensor out = attention(rms_norm(x, norm_at(kAttnNorm).weight, eps_), ctx).add_(x);
    return add_residual(out, mlp(rms_norm(out, norm_at(kMlpNorm).weight, eps_), ctx));
  }

  // Phi3Attention: qkv = qkv_proj(h); q, k, v its first n_heads·hd, next n_kv·hd and last n_kv·hd
  // columns.
  at::Tensor attention(const at::Tensor& h, const ForwardContext& ctx) override {
    const int64_t batch = h.size(0), seq = h.size(1);
    const int64_t q_cols = n_heads_ * head_dim_, kv_cols = n_kv_heads_ * head_dim_;
    const at::Tensor qkv = apply(kQkv, h, ctx);
    at::Tensor q = qkv.narrow(-1, 0, q_cols).view({batch, seq, n_heads_, head_dim_});
    at::Tensor k = qkv.narrow(-1, q_cols, kv_cols).view({batch, seq, n_kv_heads_, head_dim_});
    const at::Tensor v =
        qkv.narrow(-1, q_cols + kv_cols, kv_cols).view({batch, seq, n_kv_heads_, head_dim_});
    const at::Tensor cos = ctx.rope_cos.view({seq, 1, rotary_dim_});
    const at::Tensor sin = ctx.rope_sin.view({seq, 1, rotary_dim_});
    q = apply_partial_rope(q, cos, sin);
    k = apply_partial_rope(k, cos, sin);
    const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim_));  // head_dim**-0.5
    return apply(kO, layer_attention(ctx, index_, q, k, v, scale, ctx.causal_mask), ctx);
  }

  // Phi3MLP: gate, up = gate_up_proj(h).chunk(2); down(up · silu(gate)).
  at::Tensor mlp(const at::Tensor& h, const ForwardContext& ctx) override {
    const at::Tensor gate_up = apply(kGateUp, h, ctx);
    const at::Tensor gate = gate_up.narrow(-1, 0, intermediate_);
    const at::Tensor up = gate_up.narrow(-1, intermediate_, intermediate_);
    return apply(kDown, up * at::silu(gate), ctx);
  }

 private:
  int64_t n_heads_, n_kv_heads_, head_dim_, rotary_dim_, intermediate_;
  double eps_;
};

class Phi3Model final : public DecoderModel {
 public:
  Phi3Model(ModelConfig config, std::shared_ptr<const WeightSource> weights,
            const LoadOptions& options)
      : DecoderModel(std::move(config), std::move(weights), options) {
    const ModelConfig& c = config_;
    norm_ = load("model.norm.weight", {c.hidden_size});
    require_finite_tensor("model.norm.weight", norm_);
    // Phi3RotaryEmbedding: frequencies over the rotated channels only (dim = int(head_dim ·
    // partial_rotary_factor) in _compute_default/_compute_longrope_parameters).
    rope_ = rope_frequencies(c.rope, rotary_dim(), c.max_positions, device_obj_);
  }

  void release_embeddings() override { embed_ = at::Tensor(); }

  at::Tensor embed(const at::Tensor& ids, int64_t /*past*/) override {
    if (!embed_.defined())
      embed_ = load_stored("model.embed_tokens.weight", {config_.vocab_size, config_.hidden_size});
    return at::embedding(embed_, check_ids(ids)).to(compute_dtype_);
  }

  ForwardContext make_context(int64_t seq_len, int64_t past) const override {
    ForwardContext ctx;
    ctx.seq_len = seq_len;
    ctx.past = past;
    std::tie(ctx.rope_cos, ctx.rope_sin) =
        rope_tables(config_.rope, rope_, rotary_dim(), seq_len, compute_dtype_, past);
    // Phi3Model: create_sliding_window_causal_mask when config.sliding_window is set.
    ctx.causal_mask = causal_mask(seq_len, past, config_.sliding_window.value_or(0));
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
    const LayerSchema& schema = layer_schema(i);
    return std::make_unique<Phi3Layer>(i, load_linears(schema), load_norms(schema), config_);
  }

  LayerSchema build_schema(int64_t i) const override { return phi3_layer_schema(config_, i); }

 private:
  int64_t rotary_dim() const { return config_.rope.rotary_dim(config_.head_dim); }

  at::Tensor embed_, norm_, head_;
  RopeFrequencies rope_;
};

}  // namespace

LayerSchema phi3_layer_schema(const ModelConfig& c, int64_t i) {
  const std::string p = fmt::format("model.layers.{}.", i);
  const int64_t H = c.hidden_size, I = c.intermediate_size;
  const int64_t q_out = c.n_heads * c.head_dim, kv_out = c.n_kv_heads * c.head_dim;
  using R = LinearRole;
  LayerSchema s;
  s.layer = i;
  // Order = LinearIndex. Steps: qkv → o → gate_up → down (llama_sequential with the fused
  // linears as stored: one GPTQ problem each, so groups and act-order run across all rows).
  s.linears = {
      {"attn.qkv", p + "self_attn.qkv_proj", R::QueryKeyValue, q_out + 2 * kv_out, H, false, 0,
       "norm.attn", {q_out, kv_out, kv_out}},
      {"attn.o", p + "self_attn.o_proj", R::Output, H, q_out, false, 1, "", {}},
      {"mlp.gate_up", p + "mlp.gate_up_proj", R::GateUp, 2 * I, H, false, 2, "norm.mlp", {I, I}},
      {"mlp.down", p + "mlp.down_proj", R::Down, H, I, false, 3, "", {}},
  };
  s.norms = {  // order = NormIndex
      {"norm.attn", p + "input_layernorm", NormForm::Rms, NormSite::PreAttention, H},
      {"norm.mlp", p + "post_attention_layernorm", NormForm::Rms, NormSite::PreMlp, H},
  };
  // AutoAWQ awq/models/phi3.py get_layers_for_scaling: input_layernorm → qkv_proj (inspect
  // self_attn), qkv_proj → o_proj, post_attention_layernorm → gate_up_proj (inspect mlp),
  // gate_up_proj → down_proj. Of a fused prev_op only one slice reaches the next linear: v, the
  // last kv_out rows of qkv (o's columns are v's rows head by head; the AWQ pass skips the pair
  // under grouped-query attention), and up, the second half of gate_up (up · silu(gate) is
  // linear in up; gate goes through SiLU and cannot take a scale).
  s.scaling = {
      {"norm.attn", {"attn.qkv"}, Inspect::Attention, "", ""},
      {"attn.qkv", {"attn.o"}, Inspect::Linear, "attn.o", "", q_out + kv_out, kv_out},
      {"norm.mlp", {"mlp.gate_up"}, Inspect::Mlp, "", ""},
      {"mlp.gate_up", {"mlp.down"}, Inspect::Linear, "mlp.down", "", I, I},
  };
  return s;
}

std::unique_ptr<Model> make_phi3_model(ModelConfig config,
                                       std::shared_ptr<const WeightSource> weights,
                                       const LoadOptions& options) {
  CALQ_ASSERT(config.family == Family::Phi3, "make_phi3_model given {}", config.model_type);
  return std::make_unique<Phi3Model>(std::move(config), std::move(weights), options);
}

}  // namespace calq::core
