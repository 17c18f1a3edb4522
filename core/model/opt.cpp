// OPT forward, op for op as transformers 5 modeling_opt.py (OPTDecoderLayer with
// do_layer_norm_before = true; OPTAttention scales q right after q_proj, bias included).
#include "core/model/opt.h"

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
namespace {

/// The checkpoint's tensor-name prefix: "model.decoder." (OPTForCausalLM) or "decoder."
/// (OPTModel checkpoints such as facebook/opt-125m).
std::string opt_prefix(const WeightSource& weights) {
  return weights.contains("model.decoder.embed_tokens.weight") ? "model.decoder." : "decoder.";
}

constexpr int64_t kPositionOffset = 2;  // OPTLearnedPositionalEmbedding: position p reads row p+2
constexpr double kLayerNormEps = 1e-5;  // nn.LayerNorm default; OPT has no config field for it

// Positions in the schema's lists (build_schema below).
enum LinearIndex : size_t { kQ, kK, kV, kO, kFc1, kFc2 };
enum NormIndex : size_t { kAttnNorm, kMlpNorm };

at::Tensor layer_norm(const at::Tensor& x, const Norm& norm) {
  return at::layer_norm(x, {x.size(-1)}, norm.weight, norm.bias, kLayerNormEps);
}

class OptLayer final : public NamedDecoderLayer {
 public:
  OptLayer(int64_t index, NamedLinears linears, NamedNorms norms, const ModelConfig& config)
      : NamedDecoderLayer(index, std::move(linears), std::move(norms)),
        n_heads_(config.n_heads),
        head_dim_(config.head_dim) {}

  at::Tensor forward(const at::Tensor& x, const ForwardContext& ctx) override {
    // self_attn_layer_norm, attention, residual; final_layer_norm (per layer), MLP, residual.
    at::Tensor out = attention(layer_norm(x, norm_at(kAttnNorm)), ctx).add_(x);
    return add_residual(out, mlp(layer_norm(out, norm_at(kMlpNorm)), ctx));
  }

  at::Tensor attention(const at::Tensor& h, const ForwardContext& ctx) override {
    const int64_t batch = h.size(0), seq = h.size(1);
    observe(kQ, h, ctx);
    observe(kK, h, ctx);
    observe(kV, h, ctx);
    const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim_));
    const at::Tensor q =
        at(kQ).forward(h).mul_(scale).view({batch, seq, n_heads_, head_dim_});  // scaled q_proj
    const at::Tensor k = at(kK).forward(h).view({batch, seq, n_heads_, head_dim_});
    const at::Tensor v = at(kV).forward(h).view({batch, seq, n_heads_, head_dim_});
    const at::Tensor attn = layer_attention(ctx, index_, q, k, v, /*scale=*/1.0, ctx.causal_mask);
    return apply(kO, attn, ctx);  // out_proj
  }

  at::Tensor mlp(const at::Tensor& h, const ForwardContext& ctx) override {
    const at::Tensor hidden = apply(kFc1, h, ctx).relu_();
    return apply(kFc2, hidden, ctx);
  }

 private:
  int64_t n_heads_, head_dim_;
};

class OptModel final : public DecoderModel {
 public:
  OptModel(ModelConfig config,
           std::shared_ptr<const WeightSource> weights,
           const LoadOptions& options)
      : DecoderModel(std::move(config), std::move(weights), options) {
    const ModelConfig& c = config_;
    prefix_ = opt_prefix(*weights_);
    embed_ = load(prefix_ + "embed_tokens.weight", {c.vocab_size, c.hidden_size});
    positions_ = load(prefix_ + "embed_positions.weight",
                      {c.max_positions + kPositionOffset, c.hidden_size});
    final_norm_ = load_norm(prefix_ + "final_layer_norm", c.hidden_size, true);
    head_ = c.tie_word_embeddings ? embed_ : load("lm_head.weight", {c.vocab_size, c.hidden_size});
    require_finite_tensor(c.tie_word_embeddings ? prefix_ + "embed_tokens.weight" : "lm_head.weight", head_);
    require_finite_tensor(final_norm_.source + ".weight", final_norm_.weight);
    require_finite_tensor(final_norm_.source + ".bias", final_norm_.bias);
  }

  at::Tensor embed(const at::Tensor& ids, int64_t past) override {
    const at::Tensor checked = check_ids(ids);
    const int64_t seq = checked.size(1);
    CALQ_CHECK(past + seq <= config_.max_positions,
               "{}: {} tokens exceed max_position_embeddings {}; expected at most that many", path_,
               past + seq, config_.max_positions);
    // No padding: positions are past..past+S-1 (cumsum(attention_mask) - 1), rows 2 on.
    return at::embedding(embed_, checked) + positions_.narrow(0, kPositionOffset + past, seq);
  }

  ForwardContext make_context(int64_t seq_len, int64_t past) const override {
    ForwardContext ctx;
    ctx.seq_len = seq_len;
    ctx.past = past;
    ctx.causal_mask = causal_mask(seq_len, past);
    return ctx;
  }

  at::Tensor logits(const at::Tensor& hidden) override {
    return project_logits(layer_norm(hidden, final_norm_), head_);
  }

 protected:
  std::unique_ptr<DecoderLayer> build_layer(int64_t i) override {
    const LayerSchema& schema = layer_schema(i);
    return std::make_unique<OptLayer>(i, load_linears(schema), load_norms(schema), config_);
  }

  LayerSchema build_schema(int64_t i) const override {
    return opt_layer_schema(config_, *weights_, i);
  }

 private:
  std::string prefix_;    // "model.decoder." or "decoder."
  at::Tensor embed_;      // [V, H]
  at::Tensor positions_;  // [max_positions + 2, H]
  Norm final_norm_;       // model.decoder.final_layer_norm
  at::Tensor head_;       // [V, H], embed_ itself when tied
};

}  // namespace

LayerSchema opt_layer_schema(const ModelConfig& c, const WeightSource& weights, int64_t i) {
  const std::string prefix = opt_prefix(weights);
  const std::string p = fmt::format("{}layers.{}.", prefix, i);
  const int64_t H = c.hidden_size, F = c.intermediate_size;
  const bool b = c.attention_bias;  // enable_bias covers every linear
  using R = LinearRole;
  LayerSchema s;
  s.layer = i;
  // Order = LinearIndex. Steps: q,k,v → out_proj → fc1 → fc2 (gptq opt_sequential).
  s.linears = {
      {"attn.q", p + "self_attn.q_proj", R::Query, H, H, b, 0, "norm.attn"},
      {"attn.k", p + "self_attn.k_proj", R::Key, H, H, b, 0, "norm.attn"},
      {"attn.v", p + "self_attn.v_proj", R::Value, H, H, b, 0, "norm.attn"},
      {"attn.o", p + "self_attn.out_proj", R::Output, H, H, b, 1, ""},
      {"mlp.fc1", p + "fc1", R::MlpIn, F, H, b, 2, "norm.mlp"},
      {"mlp.fc2", p + "fc2", R::Down, H, F, b, 3, ""},
  };
  s.norms = {  // order = NormIndex
      {"norm.attn", p + "self_attn_layer_norm", NormForm::Layer, NormSite::PreAttention, H},
      {"norm.mlp", p + "final_layer_norm", NormForm::Layer, NormSite::PreMlp, H},
  };
  // docs/algorithms.md §4.1. fc1 → fc2: ReLU(z / s) = ReLU(z) / s for s > 0, fc1's bias
  // divided too.
  s.scaling = {
      {"norm.attn", {"attn.q", "attn.k", "attn.v"}, Inspect::Attention, "", ""},
      {"attn.v", {"attn.o"}, Inspect::Linear, "attn.o", ""},
      {"norm.mlp", {"mlp.fc1"}, Inspect::Linear, "mlp.fc1", ""},
      {"mlp.fc1", {"mlp.fc2"}, Inspect::Linear, "mlp.fc2", ""},
  };
  return s;
}

std::unique_ptr<Model> make_opt_model(ModelConfig config,
                                      std::shared_ptr<const WeightSource> weights,
                                      const LoadOptions& options) {
  CALQ_ASSERT(config.family == Family::Opt, "make_opt_model given {}", config.model_type);
  return std::make_unique<OptModel>(std::move(config), std::move(weights), options);
}

}  // namespace calq::core
