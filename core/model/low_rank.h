// A low-rank addition to a linear's weight as a linear extension (LoRC, docs/algorithms.md §7.3;
// a loaded PEFT LoRA adapter with its scaling folded into b; docs/architecture.md §4.1): the
// effective weight is W + b·a. Installed by the lorc pass and load_lora_adapter, written out by
// write_lora_adapter.
#pragma once

#include <memory>
#include <string_view>

#include <ATen/core/Tensor.h>
#include <c10/core/ScalarType.h>

#include "core/model/linear_extension.h"

namespace calq::core {

struct LowRank final : LinearExtension {
  static constexpr std::string_view kKind = "low_rank";
  at::Tensor a;  ///< [rank, in], compute dtype (PEFT lora_A)
  at::Tensor b;  ///< [out, rank], compute dtype (PEFT lora_B)
  /// The dtype the factors were rounded to (and an adapter stores): a, b hold such values.
  c10::ScalarType stored_dtype = c10::ScalarType::Half;

  std::string_view kind() const override { return kKind; }
  LinearStage stage() const override { return LinearStage::Addend; }
  /// output += (x aᵀ) bᵀ, x being the input the GEMM saw: after an InputQuant the factors
  /// extend the quantized weight (docs/algorithms.md §7.3 step 4).
  void apply(const Linear& linear, LinearFlow& flow) const override;
  ExtensionState save() const override;  ///< a, b and stored_dtype by safetensors name ("F16")
  static std::shared_ptr<const LinearExtension> load(const ExtensionState& state);
};

}  // namespace calq::core
