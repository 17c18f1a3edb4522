// Activation fake quantization at a linear's boundaries (docs/algorithms.md §1.2, §5.3 W8A8,
// §7.1; docs/architecture.md §4.1), installed by scheme.activations (algorithms/pipeline.cpp,
// QAT's student) or by a checkpoint that declares quantized inputs (compressed-tensors).
#pragma once

#include <memory>
#include <string_view>
#include <utility>

#include <ATen/core/Tensor.h>

#include "core/model/linear_extension.h"
#include "core/quant/activation_quant.h"

namespace calq::core {

/// The GEMM's input is fake-quantized (W8A8, W4A8, FP8 ...), with the straight-through
/// estimator's gradient when autograd records (LKD, QAT).
struct InputQuant final : LinearExtension {
  static constexpr std::string_view kKind = "input_quant";
  explicit InputQuant(ActQuantSpec spec_, at::Tensor scale_ = at::Tensor())
      : spec(spec_), scale(std::move(scale_)) {}
  ActQuantSpec spec;
  at::Tensor scale;  ///< numel 1: a static per-tensor scale from calibration; undefined: dynamic

  std::string_view kind() const override { return kKind; }
  LinearStage stage() const override { return LinearStage::Input; }
  void apply(const Linear& linear, LinearFlow& flow) const override;
  ExtensionState save() const override;
  static std::shared_ptr<const LinearExtension> load(const ExtensionState& state);
};

/// The output (bias included) is fake-quantized per token, as the attention matmuls' int8
/// inputs (scheme.activations.bmm_inputs on attn.q/k/v): each of a fused linear's
/// output_parts on its own, since each is its own matmul input.
struct OutputQuant final : LinearExtension {
  static constexpr std::string_view kKind = "output_quant";
  explicit OutputQuant(ActQuantSpec spec_) : spec(spec_) {}
  ActQuantSpec spec;

  std::string_view kind() const override { return kKind; }
  LinearStage stage() const override { return LinearStage::Output; }
  void apply(const Linear& linear, LinearFlow& flow) const override;
  ExtensionState save() const override;
  static std::shared_ptr<const LinearExtension> load(const ExtensionState& state);
};

}  // namespace calq::core
