#include "run/run_export.h"

#include <ATen/ATen.h>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <vector>

#include <nlohmann/json.hpp>

#include "algorithms/pipeline.h"
#include "algorithms/targets.h"
#include "core/model/int8_matmul.h"
#include "core/model/model.h"

namespace calq::run {

namespace fs = std::filesystem;

namespace {

/// Where a run's LoRC adapter goes, inside save.path.
constexpr const char* kAdapterDir = "lorc_adapter";

}  // namespace

c10::ScalarType to_scalar(core::ComputeDtype dtype) {
  switch (dtype) {
    case core::ComputeDtype::Float32: return at::kFloat;
    case core::ComputeDtype::Float16: return at::kHalf;
    case core::ComputeDtype::BFloat16: return at::kBFloat16;
  }
  return at::kFloat;
}

/// The export options a recipe's `save` section gives (format, path, dtype, activations, and
/// the test hook CALQ_EXPORT_STALL).
core::ExportOptions export_options(const core::Recipe& recipe, bool overwrite) {
  core::ExportOptions options;
  options.format = recipe.save->format;
  options.path = recipe.save->path.resolved;
  options.overwrite = overwrite;
  if (recipe.save->dtype) options.fake_dtype = to_scalar(*recipe.save->dtype);
  if (recipe.scheme.activations) options.activations = recipe.scheme.activations->spec();
  if (std::getenv("CALQ_EXPORT_STALL") != nullptr) {
    // For tests/cli/killed_export_test.sh: hold the export with every file written under the
    // temporary name, so a SIGKILL lands exactly before the rename.
    options.on_stage = [](const std::string& stage) {
      if (stage != "written") return;
      std::fprintf(stderr, "calq: export stalled before the rename (CALQ_EXPORT_STALL)\n");
      std::fflush(stderr);
      for (;;) ::pause();
    };
  }
  return options;
}

core::ExportResult save_checkpoint(core::Model& model, const core::Recipe& recipe, bool overwrite,
                                   const algorithms::QuantizationResult& result,
                                   std::optional<core::AdapterResult>& adapter) {
  const core::QuantizedLinears quantized = algorithms::quantized_linears(result);
  core::ExportOptions options = export_options(recipe, overwrite);
  if (core::has_low_rank(model)) {
    // LoRC factors go out as a PEFT LoRA adapter inside the checkpoint directory, written with
    // it and renamed with it (docs/recipe.md "save").
    const std::string base = recipe.save->path.resolved;
    options.extra_files = [&model, &adapter, base](const std::string& dir) {
      adapter = core::write_lora_adapter(model, (fs::path(dir) / kAdapterDir).string(), base);
      adapter->path = (fs::path(base) / kAdapterDir).string();
    };
  }
  return core::export_checkpoint(model, quantized, options);
}

/// LLM.int8(): per layer and linear, the share of input columns that went through the float
/// matmul over everything the model ran since quantization (the evaluation); "" when unused.
std::string int8_outlier_report(core::Model& model) {
  nlohmann::json layers = nlohmann::json::array();
  bool any = false;
  for (int64_t i = 0; i < model.n_layers(); ++i) {
    nlohmann::json linears = nlohmann::json::object();
    core::DecoderLayer& layer = model.layer(i);
    for (const std::string& name : layer.linear_names()) {
      const auto* int8 = layer.linear(name).find<core::Int8Matmul>();
      if (!int8) continue;
      const core::Int8Decomposition* d = &int8->decomposition();
      any = true;
      linears[name] = {{"calls", d->calls},
                       {"outlier_column_fraction",
                        d->columns > 0 ? static_cast<double>(d->outlier_columns) / d->columns : 0.0}};
    }
    layers.push_back({{"index", i}, {"linears", linears}});
  }
  return any ? nlohmann::json{{"layers", layers}}.dump() : std::string();
}

/// Layer 0's linears, then those of later layers whose layout differs (an MoE model's sparse
/// layers), read from the schema. A router the recipe does not quantize is exported float, not packed.
void check_export_shapes(core::Model& model, const core::Recipe& recipe, bool stream) {
  std::vector<core::LinearShape> shapes;
  std::set<std::string> seen;
  const auto packed = [&](const core::LayerSchema& schema, const std::string& name, int64_t i) {
    return !core::is_router(schema.linear(name).role) ||
           algorithms::resolve_target(recipe.scheme, name, i).has_value();
  };
  core::DecoderLayer& layer = model.layer(0);
  for (const std::string& name : layer.linear_names()) {
    seen.insert(name);
    if (!packed(model.layer_schema(0), name, 0)) continue;
    const at::Tensor& w = layer.linear(name).weight;
    shapes.push_back({layer.linear(name).source, w.size(0), w.size(1)});
  }
  if (stream) model.release(0);
  for (int64_t i = 1; i < model.n_layers(); ++i) {
    const core::LayerSchema& schema = model.layer_schema(i);
    for (const core::LinearSpec& l : schema.linears) {
      if (!seen.insert(l.name).second || !packed(schema, l.name, i)) continue;
      shapes.push_back({l.checkpoint, l.out, l.in});
    }
  }
  core::check_save_shapes(*recipe.save, recipe.scheme, shapes, recipe.file);
}

}  // namespace calq::run
