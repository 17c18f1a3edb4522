// Lazy layer management and the name lookups shared by every family.
#include "core/model/decoder_model.h"

#include <ATen/core/grad_mode.h>
#include <algorithm>
#include <limits>

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/error.h"
#include "core/model/activation_quant_extensions.h"
#include "core/numeric_guard.h"

namespace calq::core {

NamedDecoderLayer::NamedDecoderLayer(int64_t index, NamedLinears linears, NamedNorms norms)
    : index_(index), linears_(std::move(linears)), norms_(std::move(norms)) {}

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
  for (auto& [n, norm] : norms_) {
    if (n == name)
      return norm;
  }
  fail("layer {}: no norm \"{}\"; expected one of {}", index_, name,
       fmt::join(norm_names(), ", "));
}

std::vector<std::string> NamedDecoderLayer::norm_names() const {
  std::vector<std::string> names;
  names.reserve(norms_.size());
  for (const auto& entry : norms_)
    names.push_back(entry.first);
  return names;
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

namespace {

/// Every linear's and norm's tensors of a freshly built layer, checked as "weights as loaded"
/// with the same message the quantization passes give (numeric_guard.h), so `calq eval` refuses
/// a NaN weight as `calq run` does instead of printing `ppl nan`.
void require_finite_layer(DecoderLayer& layer, int64_t i) {
  const auto hint = [](const std::string& source, const char* part) {
    return source.empty() ? std::string("the checkpoint stores it fused with its neighbours")
                          : fmt::format("the checkpoint tensor is {}.{}", source, part);
  };
  for (const std::string& name : layer.linear_names()) {
    const Linear& l = layer.linear(name);
    const GuardSite site{i, name, "weights as loaded"};
    require_finite(l.weight, site, "weight", hint(l.source, "weight"));
    require_finite(l.bias, site, "bias", hint(l.source, "bias"));
  }
  for (const std::string& name : layer.norm_names()) {
    const Norm& n = layer.norm(name);
    const GuardSite site{i, name, "weights as loaded"};
    require_finite(n.weight, site, "weight", hint(n.source, "weight"));
    require_finite(n.bias, site, "bias", hint(n.source, "bias"));
  }
}

/// The layer a tensor name belongs to ("7" for "model.layers.7.mlp.up_proj.weight", GPT-2's
/// "transformer.h.7.attn..." too), or "" for tensors outside the decoder layers.
std::string layer_number(const std::string& name) {
  size_t begin = 0;
  std::string previous;
  while (begin <= name.size()) {
    const size_t end = std::min(name.find('.', begin), name.size());
    const std::string part = name.substr(begin, end - begin);
    if ((previous == "layers" || previous == "h") && !part.empty() &&
        part.find_first_not_of("0123456789") == std::string::npos)
      return part;
    previous = part;
    begin = end + 1;
  }
  return "";
}

/// Tensors of layers the config does not declare would be dropped without a word: a checkpoint
/// with 7 layers of tensors under num_hidden_layers 6 is not the model its config describes.
void refuse_layers_beyond(const WeightSource& weights, int64_t n_layers, const std::string& prefix) {
  for (const std::string& name : weights.names()) {
    if (name.rfind(prefix, 0) != 0) continue;  // a multimodal checkpoint's vision tower
    const std::string number = layer_number(name);
    if (number.empty()) continue;
    const bool beyond = number.size() > 9 || std::stoll(number) >= n_layers;
    CALQ_CHECK(!beyond,
               "{}: tensor \"{}\" belongs to layer {}, but config.json declares layers 0..{} "
               "only; expected no tensors beyond them (or a layer count that matches the "
               "checkpoint)", weights.path(), name, number, n_layers - 1);
  }
}

}  // namespace

DecoderModel::DecoderModel(ModelConfig config,
                           std::shared_ptr<const WeightSource> weights,
                           const LoadOptions& options)
    : config_(std::move(config)), weights_(std::move(weights)), device_obj_(options.device) {
  compute_dtype_ = options.compute_dtype;
  device_ = options.device;
  path_ = options.path;
  refuse_layers_beyond(*weights_, config_.n_layers, config_.weight_prefix);
  n_parameters_ = count_parameters(*weights_);
  layers_.resize(static_cast<size_t>(config_.n_layers));
  schemas_.resize(static_cast<size_t>(config_.n_layers));
}

const LayerSchema& DecoderModel::layer_schema(int64_t i) const {
  CALQ_CHECK(i >= 0 && i < config_.n_layers, "{}: layer {} out of range; expected 0..{}", path_, i,
             config_.n_layers - 1);
  auto& slot = schemas_[static_cast<size_t>(i)];
  if (!slot) slot = std::make_unique<LayerSchema>(build_schema(i));
  return *slot;
}

NamedDecoderLayer::NamedLinears DecoderModel::load_linears(const LayerSchema& schema) const {
  NamedDecoderLayer::NamedLinears out;
  out.reserve(schema.linears.size());
  for (const LinearSpec& l : schema.linears) {
    CALQ_ASSERT(!l.checkpoint.empty(), "layer {} {}: a fused linear needs its family's loader",
                schema.layer, l.name);
    Linear linear = load_linear(l.checkpoint, l.out, l.in, l.bias);
    linear.output_parts = l.parts;
    out.emplace_back(l.name, std::move(linear));
  }
  return out;
}

NamedDecoderLayer::NamedNorms DecoderModel::load_norms(const LayerSchema& schema) const {
  NamedDecoderLayer::NamedNorms out;
  out.reserve(schema.norms.size());
  for (const NormSpec& n : schema.norms) {
    Norm norm = load_norm(n.checkpoint, n.size, n.bias());
    norm.form = n.form;
    out.emplace_back(n.name, std::move(norm));
  }
  return out;
}

DecoderLayer& DecoderModel::layer(int64_t i) {
  CALQ_CHECK(i >= 0 && i < config_.n_layers, "{}: layer {} out of range; expected 0..{}", path_, i,
             config_.n_layers - 1);
  auto& slot = layers_[static_cast<size_t>(i)];
  if (!slot) {
    std::unique_ptr<DecoderLayer> built = build_layer(i);
    try {
      require_finite_layer(*built, i);
    } catch (const Error& e) {
      throw Error(fmt::format("{}: {}", path_, e.what()));  // which checkpoint holds the tensor
    }
    slot = std::move(built);
  }
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
  if (const auto spec = weights_->input_quant(prefix)) l.put(std::make_shared<InputQuant>(*spec));
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

void DecoderModel::require_finite_tensor(const std::string& name, const at::Tensor& t) const {
  const int64_t bad = count_non_finite(t);
  CALQ_CHECK(bad == 0,
             "{}: tensor \"{}\" has {} non-finite (NaN/Inf) {} of {} (stage: weights as loaded); "
             "expected finite weights", weights_->path(), name, bad, bad == 1 ? "entry" : "entries",
             t.numel());
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

at::Tensor DecoderModel::causal_mask(int64_t seq_len, int64_t past, int64_t window) const {
  // Key j is visible from query i when j <= i and, with a window, i - j < window
  // (transformers masking_utils sliding_window_overlay: kv_idx > q_idx - sliding_window).
  const auto opts = at::TensorOptions().device(device_obj_).dtype(at::kLong);
  const at::Tensor i = at::arange(past, past + seq_len, opts).unsqueeze(1);
  const at::Tensor j = at::arange(past + seq_len, opts).unsqueeze(0);
  at::Tensor hidden = j > i;
  if (window > 0)
    hidden = hidden.logical_or(i - j >= window);
  at::Tensor mask = at::zeros({seq_len, past + seq_len}, opts.dtype(compute_dtype_));
  return mask.masked_fill_(hidden, -std::numeric_limits<double>::infinity());
}

}  // namespace calq::core
