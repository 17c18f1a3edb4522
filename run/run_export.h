// The export side of a run (docs/architecture.md §2.5): the recipe's save section as export
// options, the in-memory export with LoRC's adapter, the shape check made before any work, and
// LLM.int8()'s outlier report after evaluation.
#pragma once

#include <optional>
#include <string>

#include <c10/core/ScalarType.h>

#include "core/checkpoint/export_checkpoint.h"
#include "core/checkpoint/lora_adapter.h"
#include "core/recipe.h"

namespace calq::core {
class Model;
}

namespace calq::algorithms {
struct QuantizationResult;
}

namespace calq::run {

/// The recipe's dtype names as ATen types (model.dtype, save.dtype).
c10::ScalarType to_scalar(core::ComputeDtype dtype);

/// The export options a recipe's `save` section gives (format, path, dtype, activations, and
/// the test hook CALQ_EXPORT_STALL).
core::ExportOptions export_options(const core::Recipe& recipe, bool overwrite);

/// Exports the quantized model to save.path; LoRC factors go out as a PEFT adapter inside it.
core::ExportResult save_checkpoint(core::Model& model, const core::Recipe& recipe, bool overwrite,
                                   const algorithms::QuantizationResult& result,
                                   std::optional<core::AdapterResult>& adapter);

/// The export's shapes under the scheme, checked right after loading, before calibration.
void check_export_shapes(core::Model& model, const core::Recipe& recipe, bool stream);

/// LLM.int8(): per layer and linear, the share of input columns that went through the float
/// matmul over everything the model ran since quantization; "" when unused.
std::string int8_outlier_report(core::Model& model);

}  // namespace calq::run
