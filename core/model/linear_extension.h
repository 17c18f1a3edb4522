// Linear extensions (docs/architecture.md §4.1): what a quantization algorithm adds to a linear
// beyond its weight — activation fake quantizers, LLM.int8()'s decomposition, low-rank factors.
// Each kind applies itself at one stage of Linear::forward and saves itself for a layer
// checkpoint, so Linear, the forward and the resume files know no kind by name; the loaders are
// one row per kind in linear_extension_registry.cpp.
#pragma once

#include <map>
#include <string>
#include <string_view>

#include <ATen/core/Tensor.h>

namespace calq::core {

struct Linear;

/// Where an extension acts in Linear::forward, in the forward's order.
enum class LinearStage {
  Input,   ///< rewrites the GEMM's input (activation fake quantization)
  Matmul,  ///< computes the whole output from the raw input in place of every other stage
  Addend,  ///< adds a term to the GEMM's output (bias included), from the input the GEMM saw
  Output,  ///< rewrites the output (bmm-input fake quantization)
};

/// The tensors a forward passes from stage to stage.
struct LinearFlow {
  at::Tensor input;   ///< [tokens, in], as the GEMM sees it
  at::Tensor output;  ///< [tokens, out]; undefined before the GEMM
};

/// What an extension saves into a layer checkpoint and its loader reads back.
struct ExtensionState {
  std::string settings;                       ///< a JSON object; enums by name
  std::map<std::string, at::Tensor> tensors;  ///< undefined ones are not saved, so absent on load
};

/// Immutable once installed (Linear holds shared_ptr<const>, and copies of a Linear share them);
/// run-time counters, where a kind keeps them, are its only mutable state.
class LinearExtension {
 public:
  virtual ~LinearExtension() = default;
  /// The stable name that keys the registry and the layer checkpoint ("low_rank").
  virtual std::string_view kind() const = 0;
  virtual LinearStage stage() const = 0;
  /// Called by linear.forward() at stage(); `linear` is the one holding this extension.
  virtual void apply(const Linear& linear, LinearFlow& flow) const = 0;
  virtual ExtensionState save() const = 0;

 protected:
  // Copyable by the kinds themselves only (no slicing through the base).
  LinearExtension() = default;
  LinearExtension(const LinearExtension&) = default;
  LinearExtension& operator=(const LinearExtension&) = default;
};

}  // namespace calq::core
