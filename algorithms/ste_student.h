// The linears being trained through the straight-through estimator (LKD, QAT): a float32 latent
// copy of each weight is the parameter the optimizer updates; before every forward the linear's
// weight is replaced by ste_fake_quant(latent), and activations are fake-quantized as the scheme
// says (dynamic schemes only: static scales are fitted from calibration after training). At the
// end the latent weights are written back into the linears' own tensors, so the quantizing pass
// that follows (rtn) reproduces the trained student exactly. The destructor restores the linears
// if training stops early (an exception).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "core/model/model.h"
#include "core/quant/activation_quant.h"
#include "core/quant/quantizer.h"
#include "core/recipe.h"

namespace calq::calib {
class SeededRng;
}

namespace calq::algorithms {

/// `k` distinct window indices in [0, n) (k <= n), a partial Fisher–Yates shuffle: the minibatch
/// of one training step, seeded so a run repeats exactly. Returned as an int64 CPU tensor.
at::Tensor draw_batch(calib::SeededRng& rng, int64_t n, int64_t k);

/// Whether training sees the scheme's activation quantization (dynamic schemes only).
bool trains_quantized_activations(const core::SchemeSection& scheme);

class SteStudent {
 public:
  /// `activations`: the scheme's; nullopt or static leaves the inputs float during training.
  explicit SteStudent(const std::optional<core::ActivationScheme>& activations);
  ~SteStudent();
  SteStudent(const SteStudent&) = delete;
  SteStudent& operator=(const SteStudent&) = delete;

  /// `attention_input`: the linear's output feeds q·kᵀ or softmax·v (core::is_attention_input),
  /// so scheme.activations.bmm_inputs quantizes it too.
  void add(core::Linear& linear, const core::QuantSpec& spec, bool attention_input);
  /// The latent weights (leaves that require grad), in add() order.
  const std::vector<at::Tensor>& parameters() const { return latents_; }
  /// Installs the fake-quantized latent weights into the linears (before every forward).
  void quantize();
  /// Copies of the latent weights, to return to with load() (QAT keeps its best step).
  std::vector<at::Tensor> snapshot() const;
  void load(const std::vector<at::Tensor>& snapshot);
  /// Relative change ||latent − w₀|| / ||w₀|| of each linear, in add() order.
  std::vector<double> weight_changes() const;
  /// Writes the latent weights back and restores the linears' activation settings.
  void finish();

 private:
  struct Saved {
    core::Linear* linear;
    core::QuantSpec spec;
    at::Tensor weight;  ///< the linear's own tensor, written back at finish()
    at::Tensor initial;  ///< float32 copy of the starting weight
    /// The linear's extensions before add(): its activation quantizers come back at finish().
    std::vector<std::shared_ptr<const core::LinearExtension>> extensions;
  };
  void restore();

  std::optional<core::ActQuantSpec> act_;
  bool bmm_inputs_ = false;
  std::vector<Saved> saved_;
  std::vector<at::Tensor> latents_;
  bool finished_ = false;
};

}  // namespace calq::algorithms
