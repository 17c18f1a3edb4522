// LLM.int8()'s outlier decomposition as a linear extension (docs/algorithms.md §6;
// docs/architecture.md §4.1), installed by the llm_int8 pass: it replaces the whole forward,
// since it quantizes the activations itself (per token, outlier columns in float).
#pragma once

#include <memory>
#include <string_view>
#include <utility>

#include "core/model/linear_extension.h"
#include "core/quant/llm_int8.h"

namespace calq::core {

class Int8Matmul final : public LinearExtension {
 public:
  static constexpr std::string_view kKind = "llm_int8";
  explicit Int8Matmul(Int8Decomposition decomposition) : decomposition_(std::move(decomposition)) {}
  /// Its settings, and the outlier counters of every forward since it was installed (reports).
  const Int8Decomposition& decomposition() const { return decomposition_; }

  std::string_view kind() const override { return kKind; }
  LinearStage stage() const override { return LinearStage::Matmul; }
  /// int8_mixed_matmul of the raw input with the linear's (int8) weight and bias.
  void apply(const Linear& linear, LinearFlow& flow) const override;
  ExtensionState save() const override;  ///< threshold and outlier weights; not the counters
  static std::shared_ptr<const LinearExtension> load(const ExtensionState& state);

 private:
  // mutable: forward() counts calls and outlier columns, the only state that changes.
  mutable Int8Decomposition decomposition_;
};

}  // namespace calq::core
