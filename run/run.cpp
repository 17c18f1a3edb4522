#include "run/run.h"

#include <ATen/ATen.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "algorithms/layer_checkpoints.h"
#include "algorithms/pass_order.h"
#include "algorithms/pipeline.h"
#include "algorithms/resolved_recipe.h"
#include "calib/calibration_set.h"
#include "calib/stats_cache.h"
#include "core/checkpoint/export_checkpoint.h"
#include "core/checkpoint/lora_adapter.h"
#include "core/dist/communicator.h"
#include "core/error.h"
#include "core/eval/eval_budget.h"
#include "core/eval/eval_text.h"
#include "core/eval/kl_divergence.h"
#include "core/eval/perplexity.h"
#include "core/eval/task.h"
#include "core/io/atomic_file.h"
#include "core/io/output_dir.h"
#include "core/log.h"
#include "core/model/model.h"
#include "core/recipe.h"
#include "core/tokenizer/tokenizer.h"
#include "run/bit_allocation.h"
#include "run/memory_estimate.h"
#include "run/run_export.h"
#include "run/run_outputs.h"
#include "run/run_report.h"
#include "run/run_state.h"
#include "run/window_logits.h"

namespace calq::run {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::string pass_list(const std::vector<std::unique_ptr<algorithms::Pass>>& passes) {
  std::string names;
  for (const auto& p : passes) names += (names.empty() ? "" : ", ") + std::string(p->name());
  return names;
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

/// The calibration windows when the passes need them (calibration.data, seeded offsets), with
/// the memory estimate they imply; nullopt when no pass reads calibration data.
std::optional<calib::CalibrationSet> make_calibration(
    const core::Recipe& recipe, core::Model& model,
    const std::vector<std::unique_ptr<algorithms::Pass>>& passes, const RunOptions& args,
    RunReport& report) {
  std::optional<calib::CalibrationSet> calibration;
  if (algorithms::needs_calibration(passes, model, recipe)) {
    CALQ_CHECK(recipe.calibration.has_value(),
               "{}: calibration: missing; the passes ({}) need calibration data", recipe.file,
               pass_list(passes));
    CALQ_CHECK(model.tokenizer() != nullptr,
               "{}: model.tokenizer: the model has no tokenizer; expected a tokenizer path",
               recipe.file);
    calib::CalibrationOptions c;
    c.data = recipe.calibration->data.resolved;
    c.nsamples = recipe.calibration->n_samples;
    c.seqlen = recipe.calibration->seqlen;
    c.seed = static_cast<uint64_t>(recipe.calibration->seed);
    if (recipe.calibration->offsets) c.offsets_path = recipe.calibration->offsets->resolved;
    c.hidden_size = model.config().hidden_size;
    c.activation_bytes = recipe.model.dtype == core::ComputeDtype::Float32 ? 4 : 2;
    c.max_memory_gb = recipe.calibration->max_memory_gb;
    c.in_memory_only = recipe.calibration->offload == core::ActivationOffload::Ram;
    log::info("calibration: {} windows of {} tokens from {}", c.nsamples, c.seqlen, c.data);
    calibration = calib::make_calibration_set(*model.tokenizer(), c);
    report.set_calibration(*calibration);
    CalibrationFootprint footprint;
    footprint.tokens = c.nsamples * c.seqlen;
    footprint.batch_tokens = std::max<int64_t>(1, args.batch_size) * c.seqlen;
    const int64_t copies = algorithms::propagates_quantized(passes) ? 1 : 2;
    const int64_t bytes = footprint.tokens * c.hidden_size * c.activation_bytes;
    footprint.resident_copies =
        calib::offloads(algorithms::offload_policy(*recipe.calibration), copies * bytes) ? 0
                                                                                         : copies;
    for (const auto& pass : passes)
      footprint.keeps_linear_inputs = footprint.keeps_linear_inputs || pass->traits().reads.linear_inputs;
    report.set_memory_estimate(
        estimate_memory(model.config(), heaviest_layer_schema(model), model.compute_dtype(),
                        footprint, args.stream).json());
  }
  return calibration;
}

/// Quantizes with the passes (statistics cache, mixed precision, streaming, resume state), then
/// exports before evaluation: the export rounds folded norms to the stored dtype, so the
/// perplexity reported is the exported model's. Under --stream `model` becomes the checkpoint.
void quantize_and_export(std::unique_ptr<core::Model>& model, const core::LoadOptions& load,
                         const core::Recipe& recipe,
                         std::vector<std::unique_ptr<algorithms::Pass>>& passes,
                         const RunOptions& args, const std::string& state_dir, bool keep_state,
                         RunReport& report) {
  const std::optional<calib::CalibrationSet> calibration =
      make_calibration(recipe, *model, passes, args, report);
  log::info("quantizing with {}",
            recipe.passes.empty() ? "rtn (no passes given)" : "the recipe's passes");
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
                                         cache_use, report, args.out);
  }
  std::optional<core::StreamingExport> stream;
  algorithms::LayerSink sink;
  dist::Communicator& ranks = dist::Communicator::world();
  if (args.stream) {
    // Rank 0 writes the checkpoint; every rank frees each layer once it is final.
    if (ranks.is_root()) stream.emplace(*model, export_options(recipe, args.overwrite));
    sink = [&stream, &model](int64_t i, core::DecoderLayer& layer,
                             std::map<std::string, algorithms::LinearState>& states) {
      if (!stream) return;
      std::map<std::string, core::QuantizedTensor> quantized;
      for (const auto& [name, state] : states) {
        if (state.quantized) quantized.emplace(name, *state.quantized);
      }
      stream->write_layer(*model, i, layer, quantized);
    };
  }
  std::optional<algorithms::LayerCheckpoints> checkpoints;
  if (keep_state) {
    checkpoints.emplace(
        state_dir, state_fingerprint(recipe, args, calibration ? &*calibration : nullptr, *model));
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
  if (args.stream) {
    if (stream) {
      const core::ExportResult exported = stream->finish(*model);
      report.set_export(exported.json());
      report.set_section("certificate", exported.certificate);
    }
    ranks.barrier("the streamed checkpoint is written");
    // The layers were freed as they were written: evaluate the checkpoint, which re-read bit
    // for bit, as a model of its own.
    core::LoadOptions written = load;
    written.path = recipe.save->path.resolved;
    model = core::load_model(written);
  } else if (recipe.save && !ranks.is_root()) {
    core::round_to_export(*model, algorithms::quantized_linears(result),
                          export_options(recipe, args.overwrite));
  } else if (recipe.save) {
    std::optional<core::AdapterResult> adapter;
    const core::ExportResult exported =
        save_checkpoint(*model, recipe, args.overwrite, result, adapter);
    report.set_export(exported.json());
    // The same certificate the export wrote into save.path (calq_certificate.json).
    report.set_section("certificate", exported.certificate);
    if (adapter) report.set_section("adapter", adapter->json());
  }
}

/// The token stream of eval.perplexity[i], as evaluate() reads it.
std::vector<int32_t> eval_tokens(core::Model& model, const core::Recipe& recipe, size_t i,
                                 const RunOptions& args, core::PerplexityOptions& options,
                                 std::string* dataset = nullptr) {
  const core::PerplexityEval& e = recipe.eval.perplexity[i];
  CALQ_CHECK(model.tokenizer() != nullptr,
             "{}: eval: the model has no tokenizer; expected model.tokenizer", recipe.file);
  const core::EvalText text = core::read_eval_text(e.data.resolved, e.join);
  options.seqlen = e.seqlen;
  options.max_windows = e.max_windows;
  options.batch_size = args.batch_size;
  options.label = "ppl " + text.dataset;
  options.seqlen_key = fmt::format("{}: eval.perplexity[{}].seqlen", recipe.file, i);
  if (dataset) *dataset = text.dataset;
  return core::perplexity_tokens(*model.tokenizer(), text.text, options);
}

/// eval.kl's base (docs/tasks.md): a saved file, or the float model's top-k distribution on the
/// windows of eval.perplexity[0], taken before quantization changes the model. Rank 0 only.
std::optional<core::TopKDistribution> kl_base(core::Model& model, const core::Recipe& recipe,
                                              const RunOptions& args) {
  if (!recipe.eval.kl || !dist::Communicator::world().is_root()) return std::nullopt;
  if (recipe.eval.kl->base_file) return core::load_topk_distribution(recipe.eval.kl->base_file->resolved);
  core::PerplexityOptions options;
  const std::vector<int32_t> tokens = eval_tokens(model, recipe, 0, args, options);
  int64_t windows = static_cast<int64_t>(tokens.size()) / options.seqlen;
  if (options.max_windows > 0) windows = std::min(windows, options.max_windows);
  CALQ_CHECK(windows >= 1, "{}: eval.kl: eval.perplexity[0]'s text holds no window of {} tokens",
             recipe.file, options.seqlen);
  log::info("kl base: the float model's top-{} on {} windows of {}", recipe.eval.kl->top_k,
            windows, options.seqlen);
  return core::topk_distribution(model, tokens, options.seqlen, windows, recipe.eval.kl->top_k,
                                 args.batch_size);
}

/// eval.kl and eval.tasks on the evaluated model (rank 0; the others skip them).
void evaluate_beyond_perplexity(core::Model& model, const RunOptions& args,
                                const std::optional<core::TopKDistribution>& base,
                                const std::vector<core::Task>& tasks, RunReport& report) {
  if (!dist::Communicator::world().is_root()) return;
  if (base) {
    const core::KlResult k = core::compare_to_base(model, *base, args.batch_size);
    log::info("KL vs the base: mean {:.6f}, p99 {:.6f}, top-1 agreement {:.2f} %", k.kl_mean,
              k.kl_p99, 100.0 * k.top1_agreement);
    report.set_eval_section("kl", k.json());
  }
  if (tasks.empty()) return;
  std::string all = "[";
  for (const core::Task& task : tasks) {
    const core::TaskResult r = core::evaluate_task(model, task);
    std::string metrics;
    for (const auto& [name, value] : r.metrics) metrics += fmt::format(" {} {:.4f}", name, value);
    log::info("task {}:{}", r.name, metrics);
    all += (all.size() > 1 ? "," : "") + r.json(/*per_document=*/false);
  }
  report.set_eval_section("tasks", all + "]");
}

/// eval.perplexity, one figure per entry (docs/architecture.md §9), each handed to
/// RunOptions::on_perplexity as soon as it is measured.
void evaluate(core::Model& model, const core::Recipe& recipe, const RunOptions& args,
              RunReport& report) {
  for (const core::PerplexityEval& e : recipe.eval.perplexity) {
    core::PerplexityOptions options;
    const auto index = static_cast<size_t>(&e - recipe.eval.perplexity.data());
    std::string dataset;
    const std::vector<int32_t> tokens = eval_tokens(model, recipe, index, args, options, &dataset);
    core::PerplexityResult r = core::evaluate_perplexity(model, tokens, options, e.data.resolved);
    r.dataset = dataset;
    r.join = core::text_join_name(e.join);
    if (!dist::Communicator::world().is_root()) {  // rank 0 prints and writes
      report.add_perplexity(r, e.data.resolved);
      continue;
    }
    if (!args.logits.empty() && &e == recipe.eval.perplexity.data())
      write_window_logits(model, tokens, r, args.logits);
    if (args.on_perplexity) args.on_perplexity(r);
    report.add_perplexity(r, e.data.resolved);
  }
}

}  // namespace

std::string run_recipe(const algorithms::ResolvedRecipe& resolved, const RunOptions& args) {
  const auto start = Clock::now();
  const core::Recipe& recipe = resolved.recipe;
  auto passes = algorithms::build_passes(recipe);
  if (recipe.save) core::check_save_scheme(*recipe.save, recipe.scheme, recipe.file);
  algorithms::check_pass_outputs(recipe, passes, args.stream);
  CALQ_ASSERT(!args.out.empty(), "RunOptions::out is empty");
  const std::string& out_dir = args.out;
  const RunOutputs outputs = check_run_outputs(recipe, args);

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
    CALQ_CHECK(!recipe.eval.kl || recipe.eval.kl->base_file,
               "{}: eval.kl: the float model's distribution needs the whole float model before "
               "quantization, which --stream never holds; expected eval.kl.base: a file `calq "
               "eval --save-logits` wrote", recipe.file);
  }
  // The tasks' definitions and documents, read before any work so a bad file fails here.
  std::vector<core::Task> tasks;
  for (const core::TaskEval& t : recipe.eval.tasks)
    tasks.push_back(core::load_task(t.task.resolved, t.limit, t.data ? t.data->resolved : ""));

  // Ranks (core/dist): rank 0 alone claims and writes the outputs (report, export, resume
  // state); the others compute their shares and wait for it where they read what it wrote.
  dist::Communicator& ranks = dist::Communicator::world();
  CALQ_CHECK(!ranks.distributed() || load.device == "cpu",
             "{}: model.device: {} with {} ranks; expected cpu (calq's ranks communicate over "
             "Gloo; the NCCL backend for CUDA is not built yet)", recipe.file, load.device,
             ranks.size());
  // Claim the outputs (locks, parent folders, the report folder) only now that every check
  // passed, and before any work: an unwritable parent fails here, not after quantization.
  std::optional<core::OutputClaim> out_claim;
  std::optional<core::OutputClaim> save_claim;
  if (ranks.is_root()) {
    out_claim.emplace(outputs.out, "--out", /*create_dir=*/true);
    if (outputs.save) save_claim.emplace(*outputs.save, recipe.file + ": save.path", false);
  }

  const std::string state_dir = state_dir_of(out_dir);
  const bool keep_state = !args.float_only && !args.no_resume_state;
  StateFolder state_folder(state_dir);
  if (keep_state && !args.resuming && ranks.is_root()) {
    fs::remove_all(state_dir);  // a fresh run never continues an older one's layers
    state_folder.arm();
    write_run_request(recipe, args, state_dir);
  }
  ranks.barrier("outputs claimed by rank 0");

  RunReport report(recipe, *model);
  try {
    const std::optional<core::TopKDistribution> base = kl_base(*model, recipe, args);
    if (args.float_only) {
      report.set_float();
    } else {
      quantize_and_export(model, load, recipe, passes, args, state_dir, keep_state, report);
    }
    evaluate(*model, recipe, args, report);
    evaluate_beyond_perplexity(*model, args, base, tasks, report);
  } catch (const dist::PeerFailure&) {
    // Another rank died: like a kill, this run's state stays for `calq run --resume`.
    state_folder.disarm();
    if (out_claim && keep_state) out_claim->keep();
    throw;
  }

  if (const std::string int8 = args.stream ? std::string() : int8_outlier_report(*model);
      !int8.empty())
    report.set_section("llm_int8", int8);
  report.set_ranks(ranks.size());
  report.finish(std::chrono::duration<double>(Clock::now() - start).count());
  if (!ranks.is_root()) {
    ranks.barrier("report written by rank 0");
    return report.dump() + "\n";
  }
  fs::create_directories(out_dir);
  const std::string report_path = (fs::path(out_dir) / "report.json").string();
  std::string text = report.dump() + "\n";
  core::write_string_atomically(report_path, text);
  log::info("report written to {}", report_path);
  if (keep_state) fs::remove_all(state_dir);
  state_folder.disarm();
  out_claim->keep();
  if (save_claim) save_claim->keep();
  ranks.barrier("report written by rank 0");
  return text;
}

}  // namespace calq::run
