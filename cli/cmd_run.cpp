// `calq run RECIPE.yaml`: load the model, build the calibration set, run the recipe's passes,
// evaluate, and write DIR/report.json (design.md "report.json"). Errors in the recipe stop the
// run before any output is written.
#include <ATen/ATen.h>

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "algorithms/pipeline.h"
#include "calib/calibration_set.h"
#include "cli/commands.h"
#include "cli/run_recipe.h"
#include "cli/run_report.h"
#include "core/checkpoint/export_checkpoint.h"
#include "core/checkpoint/lora_adapter.h"
#include "core/error.h"
#include "core/eval/eval_text.h"
#include "core/eval/perplexity.h"
#include "core/io/atomic_file.h"
#include "core/log.h"
#include "core/model/model.h"
#include "core/recipe.h"
#include "core/tokenizer/tokenizer.h"

namespace calq::cli {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

c10::ScalarType to_scalar(core::ComputeDtype dtype) {
  switch (dtype) {
    case core::ComputeDtype::Float32: return at::kFloat;
    case core::ComputeDtype::Float16: return at::kHalf;
    case core::ComputeDtype::BFloat16: return at::kBFloat16;
  }
  return at::kFloat;
}

std::string pass_list(const std::vector<std::unique_ptr<algorithms::Pass>>& passes) {
  std::string names;
  for (const auto& p : passes) names += (names.empty() ? "" : ", ") + std::string(p->name());
  return names;
}

/// Where a run's LoRC adapter goes, inside save.path.
constexpr const char* kAdapterDir = "lorc_adapter";

core::ExportResult save_checkpoint(core::Model& model, const core::Recipe& recipe,
                                   const algorithms::QuantizationResult& result,
                                   std::optional<core::AdapterResult>& adapter) {
  const core::QuantizedLinears quantized = algorithms::quantized_linears(result);
  core::ExportOptions options;
  options.format = recipe.save->format;
  options.path = recipe.save->path.resolved;
  if (recipe.save->dtype) options.fake_dtype = to_scalar(*recipe.save->dtype);
  if (recipe.scheme.activations) options.activations = recipe.scheme.activations->spec();
  if (core::has_low_rank(model)) {
    // LoRC factors go out as a PEFT LoRA adapter inside the checkpoint directory, written with
    // it and renamed with it (docs/recipe.md "save").
    const std::string base = recipe.save->path.resolved;
    options.extra_files = [&model, &adapter, base](const std::string& dir) {
      adapter = core::write_lora_adapter(model, (fs::path(dir) / kAdapterDir).string(), base);
      adapter->path = (fs::path(base) / kAdapterDir).string();
    };
  }
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
      const auto& d = layer.linear(name).int8;
      if (!d) continue;
      any = true;
      linears[name] = {{"calls", d->calls},
                       {"outlier_column_fraction",
                        d->columns > 0 ? static_cast<double>(d->outlier_columns) / d->columns : 0.0}};
    }
    layers.push_back({{"index", i}, {"linears", linears}});
  }
  return any ? nlohmann::json{{"layers", layers}}.dump() : std::string();
}

}  // namespace

std::string recipe_hash(const std::string& recipe_path, const std::vector<std::string>& overrides) {
  const core::Recipe recipe = core::load_recipe(recipe_path, overrides);
  algorithms::build_passes(recipe);  // pass defaults are part of the resolved recipe
  return recipe.hash_hex();
}

int run_recipe(const RunRequest& args) {
  const auto start = Clock::now();
  const core::Recipe recipe = core::load_recipe(args.recipe, args.overrides);
  // Build the passes first: their option errors must come before any heavy work.
  auto passes = algorithms::build_passes(recipe);
  if (recipe.save) {
    core::check_save_scheme(*recipe.save, recipe.scheme, recipe.file);
    for (const auto& pass : passes) {
      CALQ_CHECK(std::string(pass->name()) != "llm_int8" || recipe.save->format == core::SaveFormat::Fake,
                 "{}: save.format {}: no checkpoint format stores LLM.int8()'s outlier "
                 "decomposition; expected save.format fake (weights only) or no save",
                 recipe.file, core::save_format_name(recipe.save->format));
    }
  }
  const std::string out_dir =
      args.out.empty() ? (fs::path("out") / fs::path(args.recipe).stem()).string() : args.out;

  core::LoadOptions load;
  load.path = recipe.model.path.resolved;
  if (recipe.model.tokenizer) load.tokenizer_path = recipe.model.tokenizer->resolved;
  load.device = core::device_name(recipe.model.device);
  load.compute_dtype = to_scalar(recipe.model.dtype);
  auto model = core::load_model(load);
  algorithms::check_passes(passes, *model);

  RunReport report(recipe, *model);
  if (args.float_only) {
    report.set_float();
  } else {
  std::optional<calib::CalibrationSet> calibration;
  if (algorithms::needs_calibration(passes, *model, recipe)) {
    CALQ_CHECK(recipe.calibration.has_value(),
               "{}: calibration: missing; the passes ({}) need calibration data", recipe.file,
               pass_list(passes));
    CALQ_CHECK(model->tokenizer() != nullptr,
               "{}: model.tokenizer: the model has no tokenizer; expected a tokenizer path",
               recipe.file);
    calib::CalibrationOptions c;
    c.data = recipe.calibration->data.resolved;
    c.nsamples = recipe.calibration->n_samples;
    c.seqlen = recipe.calibration->seqlen;
    c.seed = static_cast<uint64_t>(recipe.calibration->seed);
    if (recipe.calibration->offsets) c.offsets_path = recipe.calibration->offsets->resolved;
    log::info("calibration: {} windows of {} tokens from {}", c.nsamples, c.seqlen, c.data);
    calibration = calib::make_calibration_set(*model->tokenizer(), c);
    report.set_calibration(*calibration);
  }

  log::info("quantizing with {}", recipe.passes.empty() ? "rtn (no passes given)" : "the recipe's passes");
  const algorithms::QuantizationResult result = algorithms::quantize_model(
      *model, recipe, passes, calibration ? &*calibration : nullptr, args.batch_size);
  report.set_quantization(result);
  log::info("quantized in {:.1f} s", result.seconds);
  // Export before evaluating: the export rounds folded norms to the stored dtype, so the
  // perplexity reported is the exported model's.
  if (recipe.save) {
    std::optional<core::AdapterResult> adapter;
    report.set_export(save_checkpoint(*model, recipe, result, adapter).json());
    if (adapter) report.set_section("adapter", adapter->json());
  }
  }

  for (const core::PerplexityEval& e : recipe.eval.perplexity) {
    CALQ_CHECK(model->tokenizer() != nullptr,
               "{}: eval: the model has no tokenizer; expected model.tokenizer", recipe.file);
    const core::EvalText text = core::read_eval_text(e.data.resolved, e.join);
    const std::vector<int32_t> tokens = model->tokenizer()->encode(text.text, true);
    core::PerplexityOptions options;
    options.seqlen = e.seqlen;
    options.max_windows = e.max_windows;
    options.batch_size = args.batch_size;
    options.label = "ppl " + text.dataset;
    core::PerplexityResult r = core::evaluate_perplexity(*model, tokens, options, e.data.resolved);
    r.dataset = text.dataset;
    r.join = core::text_join_name(e.join);
    std::printf("%s: ppl %.4f (seqlen %lld, %lld tokens, %lld windows)\n", r.dataset.c_str(),
                r.ppl, static_cast<long long>(r.seqlen), static_cast<long long>(r.tokens),
                static_cast<long long>(r.windows));
    std::fflush(stdout);
    report.add_perplexity(r, e.data.resolved);
  }

  if (const std::string int8 = int8_outlier_report(*model); !int8.empty())
    report.set_section("llm_int8", int8);
  report.finish(std::chrono::duration<double>(Clock::now() - start).count());
  fs::create_directories(out_dir);
  const std::string report_path = (fs::path(out_dir) / "report.json").string();
  core::write_string_atomically(report_path, report.dump() + "\n");
  log::info("report written to {}", report_path);
  return 0;
}

CommandRunner add_run_command(CLI::App& app) {
  auto args = std::make_shared<RunRequest>();
  CLI::App* cmd = app.add_subcommand("run", "Quantize (and evaluate) as a recipe says");
  cmd->add_option("recipe", args->recipe, "Recipe YAML")->required();
  cmd->add_option("--set", args->overrides, "Override a recipe key: key.path=value (repeatable)");
  cmd->add_option("--out", args->out, "Output directory (default out/<recipe name>)");
  cmd->add_option("--batch-size", args->batch_size, "Windows per forward")->capture_default_str()
      ->check(CLI::PositiveNumber);
  return [args] { return run_recipe(*args); };
}

}  // namespace calq::cli
