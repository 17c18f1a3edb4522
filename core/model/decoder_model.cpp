// Lazy layer management and the name lookups shared by every family.
#include "core/model/decoder_model.h"

#include <limits>

#include <ATen/ATen.h>
#include <fmt/format.h>

#include "core/error.h"

namespace calq::core {

NamedDecoderLayer::NamedDecoderLayer(int64_t index,
                                     std::vector<std::pair<std::string, Linear>> linears,
                                     Norm attn_norm,
                                     Norm mlp_norm)
    : index_(index),
      linears_(std::move(linears)),
      attn_norm_(std::move(attn_norm)),
      mlp_norm_(std::move(mlp_norm)) {}

Linear& NamedDecoderLayer::linear(std::string_view name) {
  for (auto& [n, l] : linears_) {
    if (n == name)
      return l;
  }
  fail("layer {}: no linear \"{}\"; expected one of {}", index_, name,
       fmt::join(linear_names(), ", "));
}

std::vector<std::string> NamedDecoderLayer::linear_names() const {
  std::vector<std::string> names;
  names.reserve(linears_.size());
  for (const auto& entry : linears_)
    names.push_back(entry.first);
  return names;
}

Norm& NamedDecoderLayer::norm(std::string_view name) {
  if (name == "norm.attn")
    return attn_norm_;
  if (name == "norm.mlp")
    return mlp_norm_;
  fail("layer {}: no norm \"{}\"; expected norm.attn or norm.mlp", index_, name);
}

at::Tensor add_residual(at::Tensor sum, const at::Tensor& y) {
  if (at::GradMode::is_enabled() && (sum.requires_grad() || y.requires_grad()))
    return sum + y;
  return sum.add_(y);
}

void NamedDecoderLayer::observe(size_t k, const at::Tensor& x, const ForwardContext& ctx) const {
  if (ctx.observer)
    ctx.observer(index_, linears_[k].first, x);
}

at::Tensor NamedDecoderLayer::apply(size_t k, const at::Tensor& x, const ForwardContext& ctx) {
  observe(k, x, ctx);
  return linears_[k].second.forward(x);
}

DecoderModel::DecoderModel(ModelConfig config,
                           std::shared_ptr<const WeightSource> weights,
                           const LoadOptions& options)
    : config_(std::move(config)), weights_(std::move(weights)), device_obj_(options.device) {
  compute_dtype_ = options.compute_dtype;
  device_ = options.device;
  path_ = options.path;
  n_parameters_ = count_parameters(*weights_);
  layers_.resize(static_cast<size_t>(config_.n_layers));
}

DecoderLayer& DecoderModel::layer(int64_t i) {
  CALQ_CHECK(i >= 0 && i < config_.n_layers, "{}: layer {} out of range; expected 0..{}", path_, i,
             config_.n_layers - 1);
  auto& slot = layers_[static_cast<size_t>(i)];
  if (!slot)
    slot = build_layer(i);
  return *slot;
}

void DecoderModel::release(int64_t i) {
  CALQ_CHECK(i >= 0 && i < config_.n_layers, "{}: layer {} out of range; expected 0..{}", path_, i,
             config_.n_layers - 1);
  layers_[static_cast<size_t>(i)].reset();
}

at::Tensor DecoderModel::load(const std::string& name, const std::vector<int64_t>& shape) const {
  return load_weight(*weights_, name, shape, compute_dtype_, device_obj_);
}

at::Tensor DecoderModel::load_stored(const std::string& name, const std::vector<int64_t>& shape) const {
  return load_weight(*weights_, name, shape, config_.storage_dtype, device_obj_);
}

Linear DecoderModel::load_linear(const std::string& prefix,
                                 int64_t out,
                                 int64_t in,
                                 bool bias) const {
  Linear l;
  l.weight = load(prefix + ".weight", {out, in});
  if (bias)
    l.bias = load(prefix + ".bias", {out});
  l.source = prefix;
  l.input_quant = weights_->input_quant(prefix);
  return l;
}

Norm DecoderModel::load_norm(const std::string& prefix, int64_t n, bool bias) const {
  Norm norm;
  norm.weight = load(prefix + ".weight", {n});
  if (bias)
    norm.bias = load(prefix + ".bias", {n});
  norm.source = prefix;
  return norm;
}

at::Tensor DecoderModel::project_logits(const at::Tensor& hidden, const at::Tensor& head) {
  return Linear{head, {}}.forward(hidden).to(at::kFloat);
}

at::Tensor DecoderModel::check_ids(const at::Tensor& ids) const {
  CALQ_CHECK(ids.dim() == 2, "{}: token ids have {} dimensions; expected [batch, seq]", path_,
             ids.dim());
  CALQ_CHECK(!at::isFloatingType(ids.scalar_type()),
             "{}: token ids have dtype {}; expected an integer type", path_,
             c10::toString(ids.scalar_type()));
  if (ids.numel() > 0) {
    const int64_t lo = ids.min().item<int64_t>();
    const int64_t hi = ids.max().item<int64_t>();
    CALQ_CHECK(lo >= 0 && hi < config_.vocab_size,
               "{}: token ids span {}..{}; expected 0..{} (the vocabulary)", path_, lo, hi,
               config_.vocab_size - 1);
  }
  return ids.to(device_obj_, at::kLong);
}

at::Tensor DecoderModel::causal_mask(int64_t seq_len, int64_t window) const {
  // Key j is visible from query i when j <= i and, with a window, i - j < window
  // (transformers masking_utils sliding_window_overlay: kv_idx > q_idx - sliding_window).
  const auto opts = at::TensorOptions().device(device_obj_).dtype(at::kLong);
  const at::Tensor i = at::arange(seq_len, opts).unsqueeze(1);
  const at::Tensor j = at::arange(seq_len, opts).unsqueeze(0);
  at::Tensor hidden = j > i;
  if (window > 0)
    hidden = hidden.logical_or(i - j >= window);
  at::Tensor mask = at::zeros({seq_len, seq_len}, opts.dtype(compute_dtype_));
  return mask.masked_fill_(hidden, -std::numeric_limits<double>::infinity());
}

}  // namespace calq::core
