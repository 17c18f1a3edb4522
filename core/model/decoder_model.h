// The machinery the three family implementations share: a Model that materialises decoder
// layers from a WeightSource on demand and frees them on release, and a DecoderLayer base that
// resolves the uniform linear/norm names. Families (llama.h, opt.h, gpt2.h) add the math.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

#include "core/model/model.h"
#include "core/model/weight_source.h"

namespace calq::core {

/// A decoder layer whose linears and norms live in name-ordered lists (execution order), as its
/// schema lists them.
class NamedDecoderLayer : public DecoderLayer {
 public:
  using NamedLinears = std::vector<std::pair<std::string, Linear>>;
  using NamedNorms = std::vector<std::pair<std::string, Norm>>;
  NamedDecoderLayer(int64_t index, NamedLinears linears, NamedNorms norms);
  Linear& linear(std::string_view name) override;
  std::vector<std::string> linear_names() const override;
  Norm& norm(std::string_view name) override;
  std::vector<std::string> norm_names() const override;
  int64_t index() const override { return index_; }

 protected:
  /// The k-th linear in execution order (families index with their own enum).
  Linear& at(size_t k) { return linears_[k].second; }
  /// The k-th norm in execution order.
  const Norm& norm_at(size_t k) const { return norms_[k].second; }
  /// Calls ctx.observer (if any) with the input of the k-th linear, then applies it.
  at::Tensor apply(size_t k, const at::Tensor& x, const ForwardContext& ctx);
  void observe(size_t k, const at::Tensor& x, const ForwardContext& ctx) const;

  int64_t index_;
  NamedLinears linears_;
  NamedNorms norms_;
};

/// `sum` + `y` (sum is a residual stream the caller owns), in place unless autograd records (LKD,
/// QAT): a norm has saved `sum` for its backward, which an in-place add would invalidate.
at::Tensor add_residual(at::Tensor sum, const at::Tensor& y);

/// A Model over a WeightSource with lazily built layers. Subclasses load their resident
/// tensors (embeddings, final norm, head) in their constructor and build layers in build_layer.
class DecoderModel : public Model {
 public:
  DecoderModel(ModelConfig config,
               std::shared_ptr<const WeightSource> weights,
               const LoadOptions& options);
  const ModelConfig& config() const override { return config_; }
  DecoderLayer& layer(int64_t i) override;
  void release(int64_t i) override;
  const LayerSchema& layer_schema(int64_t i) const override;

 protected:
  virtual std::unique_ptr<DecoderLayer> build_layer(int64_t i) = 0;
  /// The family's description of layer i (called once per layer, then cached).
  virtual LayerSchema build_schema(int64_t i) const = 0;

  /// Every linear and norm of `schema` loaded by its checkpoint name and shape, for families
  /// whose checkpoints store each linear on its own.
  NamedDecoderLayer::NamedLinears load_linears(const LayerSchema& schema) const;
  NamedDecoderLayer::NamedNorms load_norms(const LayerSchema& schema) const;

  /// Checked load of one tensor, converted to the compute dtype and device.
  at::Tensor load(const std::string& name, const std::vector<int64_t>& shape) const;
  /// As load, but in the checkpoint's storage dtype (config().storage_dtype).
  at::Tensor load_stored(const std::string& name, const std::vector<int64_t>& shape) const;
  /// `prefix`.weight [out, in] and, when `bias`, `prefix`.bias [out].
  Linear load_linear(const std::string& prefix, int64_t out, int64_t in, bool bias) const;
  /// `prefix`.weight [n] and, when `bias`, `prefix`.bias [n].
  Norm load_norm(const std::string& prefix, int64_t n, bool bias) const;
  /// Throws calq::Error "<path>: tensor "lm_head.weight" has 1 non-finite (NaN/Inf) entry of
  /// 1536 (stage: weights as loaded); expected finite weights" when `t` holds a NaN or an Inf.
  /// Families call it on the final norm and the head (the layers are checked as they are built);
  /// an untied embedding table is not: only the rows of the tokens met matter, and the
  /// perplexity check names the embedding when one of those is non-finite.
  void require_finite_tensor(const std::string& name, const at::Tensor& t) const;
  /// float32 logits of hidden [.., H] against head weight [V, H] (compute dtype matmul, as
  /// transformers' lm_head followed by .float()).
  static at::Tensor project_logits(const at::Tensor& hidden, const at::Tensor& head);
  /// ids [batch, seq] int64 on the model's device, checked against the vocabulary.
  at::Tensor check_ids(const at::Tensor& ids) const;
  /// The additive causal mask [seq, past + seq] in the compute dtype (0 / -inf) of queries at
  /// positions past..past+seq-1 over keys 0..past+seq-1, optionally limited to the last
  /// `window` keys (Mistral sliding window).
  at::Tensor causal_mask(int64_t seq_len, int64_t past, int64_t window = 0) const;

  ModelConfig config_;
  std::shared_ptr<const WeightSource> weights_;
  c10::Device device_obj_;
  std::vector<std::unique_ptr<DecoderLayer>> layers_;
  mutable std::vector<std::unique_ptr<LayerSchema>> schemas_;
};

}  // namespace calq::core
