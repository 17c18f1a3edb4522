// `calq run RECIPE.yaml`: load the model, build the calibration set, run the recipe's passes,
// evaluate, and write DIR/report.json (docs/architecture.md §8). Errors in the recipe stop the
// run before any output is written.
#include <ATen/ATen.h>

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "algorithms/layer_checkpoints.h"
#include "algorithms/mixed_precision.h"
#include "algorithms/pass_order.h"
#include "algorithms/pipeline.h"
#include "algorithms/resolved_recipe.h"
#include "algorithms/targets.h"
#include "calib/calibration_set.h"
#include "calib/stats_cache.h"
#include "cli/bounds.h"
#include "cli/commands.h"
#include "cli/gnuplot.h"
#include "cli/memory_estimate.h"
#include "cli/run_recipe.h"
#include "cli/run_report.h"
#include "cli/window_logits.h"
#include "core/checkpoint/export_checkpoint.h"
#include "core/checkpoint/lora_adapter.h"
#include "core/error.h"
#include "core/io/json_text.h"
#include "core/eval/eval_budget.h"
#include "core/eval/eval_text.h"
#include "core/eval/perplexity.h"
#include "core/io/atomic_file.h"
#include "core/io/output_dir.h"
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

namespace {

/// A clustered bar chart of every linear's sensitivity at each candidate (log scale), the chosen
/// width marked in the label: DIR/sensitivity.{dat,gp,png,svg}.
void plot_sensitivity(const std::string& dir,
                      const std::vector<algorithms::LinearSensitivity>& sensitivities,
                      const algorithms::BitAllocation& allocation,
                      const core::MixedPrecisionSection& section) {
  std::string data;
  for (size_t l = 0; l < sensitivities.size(); ++l) {
    const auto& s = sensitivities[l];
    data += fmt::format("\"L{} {} ({}b)\"", s.layer, s.linear,
                        section.candidates[allocation.choice[l]].bits);
    for (const double p : s.proxy) data += fmt::format(" {:.6g}", std::max(p, 1e-12));
    data += "\n";
  }
  fs::create_directories(dir);
  core::write_string_atomically(dir + "/sensitivity.dat", data);
  std::string plots;
  for (size_t c = 0; c < section.candidates.size(); ++c) {
    const auto& cand = section.candidates[c];
    plots += fmt::format("{}'{}/sensitivity.dat' using {}{} title 'W{}{}'", c ? ", " : "", dir, c + 2,
                         c ? "" : ":xtic(1)", cand.bits,
                         cand.group_size > 0 ? fmt::format(" g{}", cand.group_size) : "");
  }
  draw_with_gnuplot(
      dir, "sensitivity",
      fmt::format("set title 'Sensitivity per linear: tr(dW H dW^T) of RTN at each width "
                  "(chosen width in brackets; {:.3f} of {} bits per weight used)'\n"
                  "set style data histograms\nset style histogram clustered gap 1\n"
                  "set style fill solid 0.8 border -1\nset logscale y\nset grid ytics\n"
                  "set ylabel 'proxy loss (log)'\nset xtics rotate by 90 right font ',8'\n"
                  "set bmargin 10\nset key top right\nplot {}",
                  allocation.avg_bits, section.budget_bits, plots),
      "mixed precision");
}

core::Recipe allocate_mixed_precision(core::Model& model, const core::Recipe& recipe,
                                      const at::Tensor& windows, int64_t batch_size,
                                      const calib::CacheUse& cache, RunReport& report,
                                      const std::string& out_dir) {
  const auto& section = *recipe.scheme.mixed_precision;
  const auto sensitivities =
      algorithms::hessian_sensitivity(model, recipe, windows, batch_size, cache);
  const auto allocation = algorithms::allocate_bits(sensitivities, section, recipe.scheme.weights.sym);
  nlohmann::json linears = nlohmann::json::array();
  for (size_t l = 0; l < sensitivities.size(); ++l) {
    const auto& s = sensitivities[l];
    const auto& c = section.candidates[allocation.choice[l]];
    linears.push_back({{"layer", s.layer}, {"linear", s.linear}, {"proxy", s.proxy},
                       {"bits", c.bits}, {"group_size", c.group_size}});
  }
  nlohmann::json candidates = nlohmann::json::array();
  for (const auto& c : section.candidates)
    candidates.push_back({{"bits", c.bits}, {"group_size", c.group_size}});
  report.set_section("mixed_precision",
                     nlohmann::json{{"budget_bits", allocation.budget_bits},
                                    {"avg_bits", allocation.avg_bits},
                                    {"bits_accounting", "b + (16 + b)/g asym, b + 16/g sym"},
                                    {"proxy", "tr(dW H dW^T), RTN at the candidate, float Hessians"},
                                    {"proxy_total", allocation.proxy_total},
                                    {"candidates", candidates},
                                    {"linears", linears}}.dump());
  log::info("mixed precision: {:.4f} stored bits per weight within a budget of {}",
            allocation.avg_bits, allocation.budget_bits);
  plot_sensitivity(out_dir, sensitivities, allocation, section);
  return algorithms::with_allocation(recipe, allocation);
}

/// Where a run keeps its per-layer state, inside its output folder; removed when the run ends.
std::string state_dir_of(const std::string& out_dir) { return (fs::path(out_dir) / "resume").string(); }

/// DIR/resume/run.json: what `calq run --resume DIR` needs to start the same run again.
void write_run_request(const RunRequest& args, const std::string& state_dir) {
  const nlohmann::json request = {{"recipe", fs::absolute(args.recipe).lexically_normal().string()},
                                  {"overrides", args.overrides},
                                  {"batch_size", args.batch_size},
                                  {"stream", args.stream},
                                  {"cache_dir", args.cache_dir},
                                  {"cache_max_bytes", args.cache_max_bytes},
                                  {"no_cache", args.no_cache},
                                  {"overwrite", args.overwrite}};
  fs::create_directories(state_dir);
  core::write_string_atomically((fs::path(state_dir) / "run.json").string(), request.dump(2) + "\n");
}

/// What the saved layers depend on: a resume under anything else would mix two runs.
std::string state_fingerprint(const core::Recipe& recipe, const RunRequest& args,
                              const calib::CalibrationSet* calibration, const core::Model& model) {
  return fmt::format("recipe {} | windows {} | batch {} | {} {}", recipe.hash_hex(),
                     calibration ? fmt::format("{:016x} {}x{}", calibration->hash,
                                               calibration->windows.size(0),
                                               calibration->windows.size(1))
                                 : std::string("none"),
                     args.batch_size, model.device(), c10::toString(model.compute_dtype()));
}

/// A fresh run's state folder, removed again if the run ends in an error: an error leaves no
/// output (the run would fail the same way when resumed); only a kill leaves state behind. (The
/// output folder itself, if the run made it, goes with the run's OutputClaim.)
class StateFolder {
 public:
  explicit StateFolder(std::string dir) : dir_(std::move(dir)) {}
  ~StateFolder() {
    if (!armed_) return;
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }
  StateFolder(const StateFolder&) = delete;
  StateFolder& operator=(const StateFolder&) = delete;
  void arm() { armed_ = true; }
  void disarm() { armed_ = false; }

 private:
  std::string dir_;
  bool armed_ = false;
};

/// Where a run writes, checked before any work (core/io/output_dir.h): the report folder and
/// the export must each be new, empty or calq's own, apart from each other and from every input.
struct RunOutputs {
  fs::path out;
  std::optional<fs::path> save;
};

RunOutputs check_run_outputs(const core::Recipe& recipe, const RunRequest& args,
                             const std::string& out_dir) {
  std::vector<core::RunInput> inputs = {{recipe.file, "the recipe"},
                                        {recipe.model.path.resolved, "model.path"}};
  if (recipe.model.tokenizer) inputs.push_back({recipe.model.tokenizer->resolved, "model.tokenizer"});
  if (recipe.calibration) {
    inputs.push_back({recipe.calibration->data.resolved, "calibration.data"});
    if (recipe.calibration->offsets)
      inputs.push_back({recipe.calibration->offsets->resolved, "calibration.offsets"});
  }
  for (const core::PerplexityEval& e : recipe.eval.perplexity) inputs.push_back({e.data.resolved, "eval data"});
  if (!args.cache_dir.empty() && !args.no_cache) inputs.push_back({args.cache_dir, "--cache"});

  RunOutputs outputs;
  outputs.out = core::output_dir_path(out_dir, "--out");
  // A resumed run's folder is calq's (it holds resume/ and the marker) whatever --overwrite said.
  core::check_output_dir(outputs.out, "--out", args.overwrite || args.resuming);
  core::check_output_apart(outputs.out, "--out", inputs);
  if (recipe.save && !args.float_only) {
    const std::string field = recipe.file + ": save.path";
    outputs.save = core::output_dir_path(recipe.save->path.resolved, field);
    core::check_output_dir(*outputs.save, field, args.overwrite);
    core::check_output_apart(*outputs.save, field, inputs);
    CALQ_CHECK(*outputs.save != outputs.out,
               "{}: {} is also the run's --out folder (report.json, resume state); expected a "
               "different directory, e.g. {}", field, outputs.save->string(),
               (outputs.out / "checkpoint").string());
  }
  return outputs;
}

/// The schema of the layer with the most linear weights (an MoE model's sparse layers, not its
/// dense first ones), for the memory estimate.
const core::LayerSchema& heaviest_layer_schema(core::Model& model) {
  const core::LayerSchema* best = &model.layer_schema(0);
  const auto weights = [](const core::LayerSchema& s) {
    double n = 0;
    for (const core::LinearSpec& l : s.linears) n += double(l.out) * double(l.in);
    return n;
  };
  for (int64_t i = 1; i < model.n_layers(); ++i)
    if (weights(model.layer_schema(i)) > weights(*best)) best = &model.layer_schema(i);
  return *best;
}

/// The export's shapes under the scheme, checked right after loading, before calibration: layer
/// 0's linears, then those of later layers whose layout differs (an MoE model's sparse layers),
/// read from the schema. A router the recipe does not quantize is exported float, not packed.
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

}  // namespace

RunRequest resumed_request(const std::string& dir) {
  const fs::path request_path = fs::path(state_dir_of(dir)) / "run.json";
  if (!fs::exists(request_path)) {
    CALQ_CHECK(!fs::exists(fs::path(dir) / "report.json"),
               "--resume {}: the run there finished (report.json is written); nothing to resume",
               dir);
    fail("--resume {}: no resumable run; expected {} (written when `calq run` starts, unless "
         "--no-resume-state)", dir, request_path.string());
  }
  nlohmann::json j;
  try {
    j = core::read_json_file(request_path.string(), {"run request", "the run.json `calq run` wrote"});
    RunRequest request;
    request.recipe = j.at("recipe").get<std::string>();
    request.overrides = j.at("overrides").get<std::vector<std::string>>();
    request.batch_size = j.at("batch_size").get<int64_t>();
    request.stream = j.at("stream").get<bool>();
    request.cache_dir = j.at("cache_dir").get<std::string>();
    request.cache_max_bytes = j.at("cache_max_bytes").get<int64_t>();
    request.no_cache = j.at("no_cache").get<bool>();
    request.overwrite = j.value("overwrite", false);
    request.out = dir;
    request.resuming = true;
    return request;
  } catch (const nlohmann::json::exception& e) {
    fail("{}: {}; expected the run.json `calq run` wrote", request_path.string(), e.what());
  }
}

int run_recipe(const RunRequest& args) {
  const auto start = Clock::now();
  // Resolving builds the passes once: their option errors come before any heavy work.
  const core::Recipe recipe = algorithms::load_resolved_recipe(args.recipe, args.overrides).recipe;
  auto passes = algorithms::build_passes(recipe);
  if (recipe.save) core::check_save_scheme(*recipe.save, recipe.scheme, recipe.file);
  algorithms::check_pass_outputs(recipe, passes, args.stream);
  const std::string out_dir =
      args.out.empty() ? (fs::path("out") / fs::path(args.recipe).stem()).string() : args.out;
  const RunOutputs outputs = check_run_outputs(recipe, args, out_dir);

  core::LoadOptions load;
  load.path = recipe.model.path.resolved;
  if (recipe.model.tokenizer) load.tokenizer_path = recipe.model.tokenizer->resolved;
  load.device = core::device_name(recipe.model.device);
  load.compute_dtype = to_scalar(recipe.model.dtype);
  auto model = core::load_model(load);
  algorithms::check_passes(passes, *model);
  if (outputs.save) check_export_shapes(*model, recipe, args.stream);
  for (size_t i = 0; i < recipe.eval.perplexity.size(); ++i) {  // before any work
    const core::PerplexityEval& e = recipe.eval.perplexity[i];
    // One window here; the batch once the text says how many windows it has.
    core::check_perplexity_fits(*model, e.seqlen, /*batch_size=*/1,
                                fmt::format("{}: eval.perplexity[{}].seqlen", recipe.file, i));
  }
  if (args.stream) {
    CALQ_CHECK(recipe.save.has_value() && !args.float_only,
               "--stream: each quantized layer is written to the checkpoint and freed; expected a "
               "save section in {}", recipe.file);
  }

  // Claim the outputs (locks, parent folders, the report folder) only now that every check
  // passed, and before any work: an unwritable parent fails here, not after quantization.
  core::OutputClaim out_claim(outputs.out, "--out", /*create_dir=*/true);
  std::optional<core::OutputClaim> save_claim;
  if (outputs.save) save_claim.emplace(*outputs.save, recipe.file + ": save.path", false);

  const std::string state_dir = state_dir_of(out_dir);
  const bool keep_state = !args.float_only && !args.no_resume_state;
  StateFolder state_folder(state_dir);
  if (keep_state && !args.resuming) {
    fs::remove_all(state_dir);  // a fresh run never continues an older one's layers
    state_folder.arm();
    write_run_request(args, state_dir);
  }

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
    c.hidden_size = model->config().hidden_size;
    c.activation_bytes = recipe.model.dtype == core::ComputeDtype::Float32 ? 4 : 2;
    c.max_memory_gb = recipe.calibration->max_memory_gb;
    log::info("calibration: {} windows of {} tokens from {}", c.nsamples, c.seqlen, c.data);
    calibration = calib::make_calibration_set(*model->tokenizer(), c);
    report.set_calibration(*calibration);
    report.set_memory_estimate(
        estimate_memory(model->config(), heaviest_layer_schema(*model), model->compute_dtype(),
                        c.nsamples * c.seqlen,
                        args.stream).json());
  }

  log::info("quantizing with {}", recipe.passes.empty() ? "rtn (no passes given)" : "the recipe's passes");
  std::optional<calib::StatsCache> cache;
  calib::CacheUse cache_use;
  if (!args.cache_dir.empty() && !args.no_cache && calibration) {
    cache.emplace(args.cache_dir, args.cache_max_bytes);
    cache_use.cache = &*cache;
    cache_use.context = fmt::format("{}|{}|{}", calib::model_files_fingerprint(load.path),
                                    core::compute_dtype_name(recipe.model.dtype), load.device);
  }
  // Mixed precision: the allocation becomes per-layer overrides of the recipe the passes see.
  std::optional<core::Recipe> allocated;
  if (recipe.scheme.mixed_precision && calibration) {
    allocated = allocate_mixed_precision(*model, recipe, calibration->windows, args.batch_size,
                                         cache_use, report, out_dir);
  }
  std::optional<core::StreamingExport> stream;
  algorithms::LayerSink sink;
  if (args.stream) {
    stream.emplace(*model, export_options(recipe, args.overwrite));
    sink = [&stream, &model](int64_t i, core::DecoderLayer& layer,
                             std::map<std::string, algorithms::LinearState>& states) {
      std::map<std::string, core::QuantizedTensor> quantized;
      for (const auto& [name, state] : states) {
        if (state.quantized) quantized.emplace(name, *state.quantized);
      }
      stream->write_layer(*model, i, layer, quantized);
    };
  }
  std::optional<algorithms::LayerCheckpoints> checkpoints;
  if (keep_state) {
    checkpoints.emplace(state_dir,
                        state_fingerprint(recipe, args, calibration ? &*calibration : nullptr, *model));
  }
  const algorithms::QuantizationResult result = algorithms::quantize_model(
      *model, allocated ? *allocated : recipe, passes, calibration ? &*calibration : nullptr,
      args.batch_size, cache_use, sink, checkpoints ? &*checkpoints : nullptr);
  report.set_quantization(result);
  if (cache) {
    report.set_calibration_cache(*cache);
    log::info("calibration cache: {} of {} layer steps reused ({})", cache->counters().hits,
              cache->counters().hits + cache->counters().misses, cache->dir());
  }
  log::info("quantized in {:.1f} s", result.seconds);
  // Export before evaluating: the export rounds folded norms to the stored dtype, so the
  // perplexity reported is the exported model's.
  if (stream) {
    const core::ExportResult exported = stream->finish(*model);
    report.set_export(exported.json());
    report.set_section("certificate", exported.certificate);
    // The layers were freed as they were written: evaluate the checkpoint, which re-read bit
    // for bit, as a model of its own.
    core::LoadOptions written = load;
    written.path = recipe.save->path.resolved;
    model = core::load_model(written);
  } else if (recipe.save) {
    std::optional<core::AdapterResult> adapter;
    const core::ExportResult exported = save_checkpoint(*model, recipe, args.overwrite, result, adapter);
    report.set_export(exported.json());
    // The same certificate the export wrote into save.path (calq_certificate.json).
    report.set_section("certificate", exported.certificate);
    if (adapter) report.set_section("adapter", adapter->json());
  }
  }

  for (const core::PerplexityEval& e : recipe.eval.perplexity) {
    CALQ_CHECK(model->tokenizer() != nullptr,
               "{}: eval: the model has no tokenizer; expected model.tokenizer", recipe.file);
    const core::EvalText text = core::read_eval_text(e.data.resolved, e.join);
    core::PerplexityOptions options;
    options.seqlen = e.seqlen;
    options.max_windows = e.max_windows;
    options.batch_size = args.batch_size;
    options.label = "ppl " + text.dataset;
    options.seqlen_key = fmt::format("{}: eval.perplexity[{}].seqlen", recipe.file,
                                     &e - recipe.eval.perplexity.data());
    const std::vector<int32_t> tokens =
        core::perplexity_tokens(*model->tokenizer(), text.text, options);
    core::PerplexityResult r = core::evaluate_perplexity(*model, tokens, options, e.data.resolved);
    r.dataset = text.dataset;
    r.join = core::text_join_name(e.join);
    if (!args.logits.empty() && &e == recipe.eval.perplexity.data())
      write_window_logits(*model, tokens, r, args.logits);
    std::printf("%s: ppl %.4f (seqlen %lld, %lld tokens, %lld windows)\n", r.dataset.c_str(),
                r.ppl, static_cast<long long>(r.seqlen), static_cast<long long>(r.tokens),
                static_cast<long long>(r.windows));
    std::fflush(stdout);
    report.add_perplexity(r, e.data.resolved);
  }

  if (const std::string int8 = args.stream ? std::string() : int8_outlier_report(*model); !int8.empty())
    report.set_section("llm_int8", int8);
  report.finish(std::chrono::duration<double>(Clock::now() - start).count());
  fs::create_directories(out_dir);
  const std::string report_path = (fs::path(out_dir) / "report.json").string();
  core::write_string_atomically(report_path, report.dump() + "\n");
  log::info("report written to {}", report_path);
  if (keep_state) fs::remove_all(state_dir);
  state_folder.disarm();
  out_claim.keep();
  if (save_claim) save_claim->keep();
  return 0;
}

void add_cache_options(CLI::App& cmd, RunRequest& request, std::string default_dir) {
  request.cache_dir = std::move(default_dir);
  cmd.add_option("--cache", request.cache_dir,
                 "Calibration cache folder: layer statistics are reused across runs")
      ->capture_default_str();
  cmd.add_option_function<std::string>(
         "--cache-limit",
         [&request](const std::string& text) {
           request.cache_max_bytes = calib::parse_byte_size(text, "--cache-limit");
         },
         "Bound on the cache folder's size, e.g. 512M, 2G (least recently used go first)")
      ->default_str("2G");
  cmd.add_flag("--no-cache", request.no_cache, "Neither read nor write the calibration cache");
}

CommandRunner add_run_command(CLI::App& app) {
  auto args = std::make_shared<RunRequest>();
  CLI::App* cmd = app.add_subcommand("run", "Quantize (and evaluate) as a recipe says");
  cmd->add_option("recipe", args->recipe, "Recipe YAML (not with --resume)");
  auto resume = std::make_shared<std::string>();
  cmd->add_option("--resume", *resume,
                  "Continue the killed run whose output folder is DIR, after its last complete "
                  "layer (same recipe and options, read from DIR/resume/run.json)");
  cmd->add_flag("--no-resume-state", args->no_resume_state,
                "Keep no per-layer state in <out>/resume (saves disk; the run cannot be resumed)");
  cmd->add_option("--set", args->overrides, "Override a recipe key: key.path=value (repeatable)");
  cmd->add_option("--out", args->out, "Output directory (default out/<recipe name>)");
  cmd->add_flag("--overwrite", args->overwrite,
                "Replace --out and save.path even if they hold files calq did not write (a file "
                "is never replaced)");
  cmd->add_option("--batch-size", args->batch_size, "Windows per forward")->capture_default_str()
      ->check(at_least(1));
  cmd->add_flag("--stream", args->stream,
                "Bounded memory: write each layer to the recipe's save path as soon as it is "
                "quantized, then free it (evaluation reads the checkpoint)");
  cmd->add_option("--logits", args->logits,
                  "Write the first eval text's windows (input_ids) and the quantized model's "
                  "float32 logits on them to this safetensors file");
  add_cache_options(*cmd, *args);
  return [args, resume] {
    if (resume->empty()) {
      CALQ_CHECK(!args->recipe.empty(), "calq run: expected a recipe YAML, or --resume DIR");
      return run_recipe(*args);
    }
    CALQ_CHECK(args->recipe.empty() && args->overrides.empty() && args->out.empty(),
               "calq run --resume {}: the recipe, --set and --out come from the interrupted run; "
               "expected --resume DIR alone", *resume);
    return run_recipe(resumed_request(*resume));
  };
}

}  // namespace calq::cli
