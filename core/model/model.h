// The model runtime's interface (docs/architecture.md §4): embeddings, N decoder layers that expose
// their linears and norms under uniform names, final norm and head. Implementations hold plain
// ATen tensors; layers are materialised on demand and can be released, so the layer-wise runner
// keeps only the current layer resident.
//
// Uniform names (each family's schema, layer_schema.h, declares its own): attn.q attn.k attn.v
// attn.o mlp.gate mlp.up mlp.down (OPT/GPT-2: mlp.fc1 mlp.fc2); norms norm.attn norm.mlp. Weights
// are [out, in] in every family (GPT-2's Conv1D is transposed on load, its fused c_attn split
// into q/k/v).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

#include "core/model/layer_schema.h"
#include "core/model/linear_extension.h"
#include "core/model/model_config.h"

namespace calq::core {

class KvCache;
class Tokenizer;

struct Linear {
  Linear() = default;
  Linear(at::Tensor w, at::Tensor b) : weight(std::move(w)), bias(std::move(b)) {}
  at::Tensor weight;  ///< [out, in], compute dtype
  at::Tensor bias;    ///< [out] or undefined
  /// A fused linear's output rows per part (LinearSpec::parts: q|k|v), each its own matmul
  /// input downstream (OutputQuant quantizes them apart). Empty: the output is one part.
  std::vector<int64_t> output_parts;
  /// Where it lives in the checkpoint it came from ("model.layers.0.self_attn.q_proj": tensors
  /// <source>.weight, <source>.bias), for exporters; empty where the checkpoint stores it fused
  /// (GPT-2's c_attn holds q, k and v).
  std::string source;

  /// x [..., in] -> [..., out]: the extensions' Input stage, the GEMM with the bias, Addend,
  /// Output; a Matmul-stage extension (LLM.int8()) computes the output alone from the raw input,
  /// since it quantizes its inputs itself (docs/architecture.md §4.1).
  at::Tensor forward(const at::Tensor& x) const;

  /// Installs `extension`, replacing the one of its kind (a linear holds one per kind).
  void put(std::shared_ptr<const LinearExtension> extension);
  /// The extension of kind T (T::kKind), nullptr when it holds none.
  template <class T>
  const T* find() const {
    for (const auto& e : extensions_)
      if (e->kind() == T::kKind) return static_cast<const T*>(e.get());
    return nullptr;
  }
  /// Every extension, in the order installed (forward applies them by stage, then this order).
  const std::vector<std::shared_ptr<const LinearExtension>>& extensions() const {
    return extensions_;
  }
  /// Replaces them all (a layer checkpoint's restore, a snapshot taken back); one per kind.
  void set_extensions(std::vector<std::shared_ptr<const LinearExtension>> extensions);

 private:
  std::vector<std::shared_ptr<const LinearExtension>> extensions_;
};

struct Norm {
  at::Tensor weight;  ///< [hidden]
  at::Tensor bias;    ///< [hidden] (LayerNorm) or undefined (RMSNorm)
  NormForm form = NormForm::Rms;  ///< how weight applies (from the family's NormSpec)
  std::string source;  ///< checkpoint prefix ("model.layers.0.input_layernorm"), as Linear's
};

/// Sees every linear's input during a forward pass (calibration statistics, capture).
/// `input` is [batch, seq, in] exactly as the linear receives it.
using LinearObserver =
    std::function<void(int64_t layer_index, std::string_view linear_name, const at::Tensor& input)>;

/// Per-forward state shared by all layers: positions and masks for one sequence length.
/// Incremental decoding (Model::forward_cached) runs seq_len new positions past..past+seq_len-1
/// against the keys of positions 0..past+seq_len-1: RoPE rows are those of the new positions,
/// masks [seq, past + seq], and every attention layer appends to and reads kv_cache.
struct ForwardContext {
  int64_t seq_len = 0;
  int64_t past = 0;            ///< position of the first new token (0: a full forward)
  KvCache* kv_cache = nullptr;  ///< earlier positions' keys and values; null: a full forward
  at::Tensor rope_cos;     ///< [seq, head_dim] (Llama family), compute dtype
  at::Tensor rope_sin;     ///< [seq, head_dim]
  at::Tensor causal_mask;  ///< [seq, past + seq] additive mask, 0 or -inf, compute dtype
  at::Tensor local_rope_cos, local_rope_sin;  ///< windowed layers' RoPE when it differs (Gemma 3)
  at::Tensor window_mask;  ///< windowed layers' mask when not every layer is windowed (Gemma)
  LinearObserver observer;  ///< may be empty
  /// Mixture of experts: the observer sees every expert's linears on every token (statistics
  /// only; calibration.moe: all_experts), not just on the tokens routed to it.
  bool observe_all_experts = false;
};

class DecoderLayer {
 public:
  virtual ~DecoderLayer() = default;
  /// x: [batch, seq, hidden] in the compute dtype -> same shape.
  virtual at::Tensor forward(const at::Tensor& x, const ForwardContext& ctx) = 0;
  /// The self-attention block alone, o projection included, no residual: `normed` is the output
  /// of norm.attn, [batch, seq, hidden] -> same. forward() is x + attention(norm.attn(x)) + ...;
  /// AWQ inspects this module's output when it scales q, k, v (docs/algorithms.md §4.1).
  virtual at::Tensor attention(const at::Tensor& normed, const ForwardContext& ctx) = 0;
  /// The MLP block alone, no residual: `normed` is the output of norm.mlp, [batch, seq, hidden]
  /// -> same. ctx carries the observer of the MLP's linears.
  virtual at::Tensor mlp(const at::Tensor& normed, const ForwardContext& ctx) = 0;
  virtual Linear& linear(std::string_view name) = 0;  ///< throws for names this family lacks
  virtual std::vector<std::string> linear_names() const = 0;  ///< in execution order
  virtual Norm& norm(std::string_view name) = 0;  ///< throws for names this family lacks
  virtual std::vector<std::string> norm_names() const = 0;  ///< in execution order
  virtual int64_t index() const = 0;
};

struct LoadOptions {
  std::string path;            ///< HF model dir, a .safetensors file's dir, or llama2.c .bin
  std::string tokenizer_path;  ///< optional: overrides the tokenizer found beside the model
  std::string device = "cpu";  ///< cpu | cuda
  c10::ScalarType compute_dtype = c10::ScalarType::Float;
  bool load_tokenizer = true;
};

class Model {
 public:
  virtual ~Model() = default;
  virtual const ModelConfig& config() const = 0;
  int64_t n_layers() const { return config().n_layers; }

  /// ids: [batch, seq] int64 -> hidden [batch, seq, hidden] (with learned positions if any).
  at::Tensor embed(const at::Tensor& ids) { return embed(ids, 0); }
  /// As embed(ids), the tokens at positions past..past+seq-1 (learned positions read those rows).
  virtual at::Tensor embed(const at::Tensor& ids, int64_t past) = 0;
  /// The context of a full forward over positions 0..seq_len-1.
  ForwardContext make_context(int64_t seq_len) const { return make_context(seq_len, 0); }
  /// The context of seq_len new positions after `past` cached ones (ForwardContext); the RoPE
  /// rows and mask entries equal those of make_context(past + seq_len)'s last seq_len rows.
  virtual ForwardContext make_context(int64_t seq_len, int64_t past) const = 0;
  virtual DecoderLayer& layer(int64_t i) = 0;  ///< materialises layer i if needed
  /// Layer i described as data (layer_schema.h), without materialising it.
  virtual const LayerSchema& layer_schema(int64_t i) const = 0;
  virtual void release(int64_t i) = 0;         ///< frees layer i's tensors
  /// Frees tensors outside the layers that embed() reads again when next called (Llama's table):
  /// a bounded-memory run needs them only for the calibration windows' X_0.
  virtual void release_embeddings() {}
  /// hidden [batch, seq, hidden] -> logits [batch, seq, vocab] in float32 (final norm + head).
  virtual at::Tensor logits(const at::Tensor& hidden) = 0;

  /// Full forward, every layer in turn: ids [batch, seq] -> float32 logits.
  at::Tensor forward(const at::Tensor& ids, const LinearObserver& observer = {});
  /// Incremental forward: ids [batch, seq] are the tokens at positions cache.length()..; every
  /// layer attends over its cached keys and values and appends the new ones (kv_cache.h).
  /// Returns the float32 logits of the last position only, [batch, vocab] (what decoding needs).
  at::Tensor forward_cached(const at::Tensor& ids, KvCache& cache);

  const Tokenizer* tokenizer() const { return tokenizer_.get(); }
  void set_tokenizer(std::shared_ptr<const Tokenizer> tokenizer) { tokenizer_ = std::move(tokenizer); }
  c10::ScalarType compute_dtype() const { return compute_dtype_; }
  const std::string& device() const { return device_; }
  const std::string& path() const { return path_; }
  int64_t n_parameters() const { return n_parameters_; }

 protected:
  std::shared_ptr<const Tokenizer> tokenizer_;
  c10::ScalarType compute_dtype_ = c10::ScalarType::Float;
  std::string device_ = "cpu";
  std::string path_;
  int64_t n_parameters_ = 0;
};

/// Picks the family from config.json's model_type (or the .bin extension for llama2.c) via the
/// family table, and loads the tokenizer unless told not to.
std::unique_ptr<Model> load_model(const LoadOptions& options);

class WeightSource;
/// The weights load_model reads for `path`, by HF names: a model directory's checkpoint (packed
/// linears dequantized) or a llama2.c .bin (q/k rows in HF order). Exporters copy from it.
std::shared_ptr<WeightSource> open_model_weights(const std::string& path);

}  // namespace calq::core
