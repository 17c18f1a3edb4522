#include "algorithms/pipeline.h"

#include <ATen/core/grad_mode.h>
#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <set>

#include <fmt/format.h>

#include "algorithms/layer_checkpoints.h"
#include "algorithms/owner_parallel.h"
#include "algorithms/pass_order.h"
#include "algorithms/registry.h"
#include "algorithms/rtn.h"
#include "algorithms/targets.h"
#include "algorithms/weight_guard.h"
#include "calib/calibration_set.h"
#include "calib/layerwise_runner.h"
#include "core/dist/communicator.h"
#include "core/error.h"
#include "core/log.h"
#include "core/resident_memory.h"
#include "core/model/activation_quant_extensions.h"
#include "core/model/model.h"
#include "core/progress.h"
#include "core/recipe.h"

namespace calq::algorithms {
namespace {

/// H + fraction·mean(diag H)·I, or I when the expert saw no token (H = 0): GPTQ on I rounds to
/// nearest on its grid, with no error feedback to spread.
void damp_expert_hessian(calib::LinearStats& stats, int64_t in, double fraction) {
  if (stats.n_tokens == 0 || !stats.hessian.defined()) {
    stats.hessian = at::eye(in, at::TensorOptions().dtype(at::kFloat));
    return;
  }
  const at::Tensor diag = stats.hessian.diagonal();
  diag.add_(diag.mean() * fraction);
}

using Clock = std::chrono::steady_clock;

std::vector<LinearTarget> targets_of(const core::Recipe& recipe,
                                     const std::vector<std::string>& linears, int64_t layer = -1) {
  std::vector<LinearTarget> targets;
  for (const std::string& name : linears) {
    if (auto t = resolve_target(recipe.scheme, name, layer)) targets.push_back(std::move(*t));
  }
  return targets;
}

/// Quantizes the linear's inputs at run time from now on (scheme.activations). A static scale is
/// the absmax grid's scale of the largest |x| seen in calibration, after any smoothing.
void install_activation_quant(calib::LayerStep& step, const std::string& name,
                              const core::ActivationScheme& scheme, LinearState& state) {
  const core::ActQuantSpec spec = scheme.spec();
  core::Linear& linear = step.layer.linear(name);
  auto input = std::make_shared<core::InputQuant>(spec);
  if (scheme.bmm_inputs &&
      core::is_attention_input(step.model.layer_schema(step.layer_index).linear(name).role))
    linear.put(std::make_shared<core::OutputQuant>(spec));
  LinearReport& report = state.reports["activations"];
  const std::string format = spec.fp ? std::string(core::fp_format_name(*spec.fp))
                                     : fmt::format("int{} {}", spec.bits, spec.sym ? "sym" : "asym");
  report.notes["activations"] = fmt::format("{} {} {}", format,
                                            scheme.granularity == core::ActGranularity::PerToken
                                                ? "per-token" : "per-tensor",
                                            scheme.dynamic ? "dynamic" : "static");
  if (linear.find<core::OutputQuant>()) report.notes["output"] = format + " per-token (bmm input)";
  if (!scheme.dynamic) {
    const auto it = step.stats.find(name);
    CALQ_CHECK(it != step.stats.end() && it->second.absmax.defined(),
               "layer {} {}: static activation scales need calibration data (calibration.data)",
               step.layer_index, name);
    CALQ_CHECK(spec.sym, "scheme.activations: static scales are symmetric (absmax) only; "
               "expected sym: true or dynamic: true");
    const double amax = it->second.absmax.max().item<double>();
    const double scale = std::max(amax, 1e-5) /
                         (spec.fp ? core::fp_format_max(*spec.fp)
                                  : static_cast<double>((1 << (spec.bits - 1)) - 1));
    input->scale = at::full({1}, scale, at::kFloat).to(linear.weight.device());
    report.figures["input_absmax"] = amax;
    report.figures["input_scale"] = scale;
  }
  linear.put(std::move(input));
}

/// The LayerHandler that applies every pass to each subset in recipe order.
class PassDriver : public calib::LayerHandler {
 public:
  PassDriver(const core::Model& model, const core::Recipe& recipe,
             std::vector<std::unique_ptr<Pass>>& passes, QuantizationResult& result,
             const LayerSink& sink, LayerCheckpoints* checkpoints)
      : model_(model), recipe_(recipe), passes_(passes), result_(result), sink_(sink),
        checkpoints_(checkpoints) {}

  void begin_layer(core::DecoderLayer& layer, int64_t index) override {
    if (static_cast<int64_t>(result_.layers.size()) <= index) result_.layers.resize(index + 1);
    require_finite_weights(layer, index);
  }

  std::vector<std::vector<std::string>> schedule(core::DecoderLayer& layer) override {
    for (const auto& pass : passes_) {
      if (pass->traits().schedule == PassSchedule::WholeLayer) return {layer.linear_names()};
    }
    return model_.layer_schema(layer.index()).sequential_steps();
  }

  calib::Requirements needs(core::DecoderLayer& layer, const std::vector<std::string>& subset) override {
    calib::Requirements needs;
    const bool static_activations = recipe_.scheme.activations && !recipe_.scheme.activations->dynamic;
    for (const LinearTarget& target : targets_of(recipe_, subset, layer.index())) {
      for (const auto& pass : passes_) needs[target.name].merge(pass->needs(target));
      if (static_activations) needs[target.name].absmax = true;
    }
    // A norm-fed group led by a router (MoE): the router sees every token, the experts only
    // theirs, so the group's input statistics (AWQ's x̄ and inputs, SmoothQuant's absmax) are
    // the router's, collected whenever a member needs any (layer_schema.h ScalingPair).
    const core::LayerSchema& schema = model_.layer_schema(layer.index());
    for (const core::ScalingPair& pair : schema.norm_fed_pairs()) {
      const std::string& lead = pair.linears.front();
      if (!core::is_router(schema.linear(lead).role) ||
          std::find(subset.begin(), subset.end(), lead) == subset.end())
        continue;
      calib::StatRequest group;
      for (const std::string& name : pair.linears) {
        const auto it = needs.find(name);
        if (it != needs.end()) group.merge(it->second);
      }
      group.hessian = needs.count(lead) ? needs[lead].hessian : false;
      if (group.any()) needs[lead].merge(group);
    }
    return needs;
  }

  void process(calib::LayerStep& step) override {
    const std::vector<LinearTarget> targets = targets_of(recipe_, step.linears, step.layer_index);
    if (targets.empty()) return;
    auto& states = result_.layers[static_cast<size_t>(step.layer_index)];
    const std::set<std::string> to_rtn = apply_expert_policy(step, targets, states);
    std::vector<LinearTarget> quantized_by_recipe;
    std::vector<LinearTarget> rtn_targets;
    for (const LinearTarget& target : targets)
      (to_rtn.count(target.name) ? rtn_targets : quantized_by_recipe).push_back(target);
    // Transforms see every target (an under-calibrated expert is still scaled with its
    // group); the quantizer and refinements only those the recipe's quantizer takes.
    PassStep pass_step{step, targets, states, true, true};
    PassStep quantizer_step{step, quantized_by_recipe, states, true, true};
    for (size_t p = 0; p < passes_.size(); ++p) {
      const auto& pass = passes_[p];
      const PassRole role = pass->traits().role;
      PassStep& current =
          role == PassRole::Quantizer || role == PassRole::Refinement ? quantizer_step : pass_step;
      current.later_reads_hessian = false;
      current.later_reads_float_weight = false;
      for (size_t later = p + 1; later < passes_.size(); ++later) {
        // A refinement (lorc) may read the quantizer's float weight and, where collected, its
        // statistics (proxy losses) without asking for them.
        const PassReads& reads = passes_[later]->traits().reads;
        current.later_reads_float_weight |= reads.quantizer_float_weight;
        current.later_reads_hessian |= reads.collected_hessians;
        for (const LinearTarget& target : targets)
          current.later_reads_hessian |= passes_[later]->needs(target).hessian;
      }
      if (current.targets.empty()) continue;
      const auto start = Clock::now();
      if (split_by_owner(*pass, current)) {
        apply_by_owner(*pass, current, step);
      } else {
        pass->apply(current);
      }
      result_.pass_seconds[pass->name()] +=
          std::chrono::duration<double>(Clock::now() - start).count();
    }
    if (!rtn_targets.empty()) {
      // calibration.expert_policy rtn: the experts the quantizer had too few tokens for.
      PassStep rtn_step{step, rtn_targets, states, false, false};
      const auto start = Clock::now();
      rtn_fallback_->apply(rtn_step);
      auto& names = result_.pass_names;  // report.json lists its linears under "rtn"
      if (std::find(names.begin(), names.end(), "rtn") == names.end()) names.push_back("rtn");
      result_.pass_seconds["rtn"] +=
          std::chrono::duration<double>(Clock::now() - start).count();
    }
    // The float weights were kept for passes after quantization (lorc) only.
    for (const LinearTarget& target : targets) pass_step.linears[target.name].float_weight = at::Tensor();
    if (recipe_.scheme.activations) {
      for (const LinearTarget& target : targets) {
        install_activation_quant(step, target.name, *recipe_.scheme.activations,
                                 pass_step.linears[target.name]);
      }
    }
  }

  /// With several ranks, a per-linear quantizer (GPTQ) quantizes each linear on one owner rank
  /// (algorithms/owner_parallel.h); float formats stay on every rank (their state is not
  /// broadcast).
  static bool split_by_owner(const Pass& pass, const PassStep& current) {
    if (!dist::Communicator::world().distributed() || !pass.traits().per_linear) return false;
    for (const LinearTarget& target : current.targets)
      if (target.fp) return false;
    return true;
  }

  void apply_by_owner(Pass& pass, PassStep& current, calib::LayerStep& step) {
    const int rank = dist::Communicator::world().rank();
    const std::vector<int> owners =
        assign_owners(step.layer, current.targets, dist::Communicator::world().size());
    std::vector<LinearTarget> mine;
    for (size_t k = 0; k < current.targets.size(); ++k) {
      const LinearTarget& target = current.targets[k];
      if (owners[k] == rank) {
        mine.push_back(target);
      } else if (current.later_reads_float_weight) {
        // What the owner keeps for a refinement (lorc): the weight it started from.
        current.linears[target.name].float_weight =
            step.layer.linear(target.name).weight.to(at::kFloat, /*non_blocking=*/false, /*copy=*/true);
      }
    }
    PassStep owned{current.step, mine, current.linears, current.later_reads_hessian,
                   current.later_reads_float_weight};
    if (!mine.empty()) pass.apply(owned);
    share_owned_results(step.layer, current.targets, owners, current.linears, pass.name(),
                        fmt::format("layer {} step {}: {}", step.layer_index, step.step_index,
                                    pass.name()));
  }

  /// calibration.min_expert_tokens and expert_policy on the subset's expert linears whose
  /// statistics were collected: records each expert's token count, stops (error), damps the
  /// Hessian (damp) or returns the linears to quantize by RTN instead (rtn).
  std::set<std::string> apply_expert_policy(calib::LayerStep& step,
                                            const std::vector<LinearTarget>& targets,
                                            std::map<std::string, LinearState>& states) {
    std::set<std::string> to_rtn;
    const core::LayerSchema& schema = model_.layer_schema(step.layer_index);
    if (!schema.moe.active()) return to_rtn;
    const core::CalibrationSection defaults;
    const core::CalibrationSection& c = recipe_.calibration ? *recipe_.calibration : defaults;
    bool quantizer_needs_data = false;
    for (const auto& pass : passes_) {
      if (pass->traits().role != PassRole::Quantizer) continue;
      for (const LinearTarget& target : targets) quantizer_needs_data |= pass->needs(target).any();
    }
    for (const LinearTarget& target : targets) {
      const core::LinearSpec& spec = schema.linear(target.name);
      const auto it = step.stats.find(target.name);
      if (spec.expert < 0 || it == step.stats.end()) continue;
      calib::LinearStats& stats = it->second;
      LinearReport& report = states[target.name].reports["moe"];
      report.figures["expert_tokens"] = static_cast<double>(stats.n_tokens);
      ExpertCoverage coverage{step.layer_index, spec.expert, stats.n_tokens, "", 0.0};
      if (stats.n_tokens < c.min_expert_tokens && quantizer_needs_data) {
        switch (c.expert_policy) {
          case core::ExpertPolicy::Error:
            fail("layer {} expert {} ({}): {} calibration tokens were routed to it, fewer than "
                 "calibration.min_expert_tokens {}; expected more calibration data, "
                 "calibration.moe: all_experts, or calibration.expert_policy damp or rtn",
                 step.layer_index, spec.expert, target.name, stats.n_tokens, c.min_expert_tokens);
          case core::ExpertPolicy::Damp:
            coverage.policy = stats.n_tokens == 0 ? "identity" : "damp";
            coverage.damp = stats.n_tokens == 0 ? 0.0 : c.expert_damp;
            if (stats.hessian.defined() || stats.n_tokens == 0) {
              bool wants_hessian = false;
              for (const auto& pass : passes_) wants_hessian |= pass->needs(target).hessian;
              if (wants_hessian) damp_expert_hessian(stats, spec.in, c.expert_damp);
            }
            break;
          case core::ExpertPolicy::Rtn:
            coverage.policy = "rtn";
            to_rtn.insert(target.name);
            break;
        }
        report.notes["expert_policy"] = coverage.policy;
        if (coverage.policy == "damp") report.figures["expert_damp"] = coverage.damp;
      }
      record_expert(coverage);
    }
    return to_rtn;
  }

  /// One entry per (layer, expert): its linears of every step share the count (they see the
  /// same tokens); a policy applied to any of them shows.
  void record_expert(const ExpertCoverage& coverage) {
    for (ExpertCoverage& e : result_.experts) {
      if (e.layer != coverage.layer || e.expert != coverage.expert) continue;
      e.tokens = std::max(e.tokens, coverage.tokens);
      if (!coverage.policy.empty()) {
        e.policy = coverage.policy;
        e.damp = coverage.damp;
      }
      return;
    }
    result_.experts.push_back(coverage);
  }

  bool propagate_quantized() const override { return propagates_quantized(passes_); }

  void set_sharded_windows(bool sharded) { sharded_windows_ = sharded; }

  void end_layer(core::DecoderLayer&, int64_t) override {}

  void layer_done(core::DecoderLayer& layer, int64_t index,
                  const calib::ActivationStore& next_inputs) override {
    auto& states = result_.layers[static_cast<size_t>(index)];
    // Saved before the sink, which rounds the layer to the stored dtype as it writes it: a
    // resumed run replays the sink on exactly what this run handed it.
    if (checkpoints_ != nullptr) {
      // The state holds every window's X_{i+1} (a resumed run may have another world size):
      // gathered from the ranks' shares to rank 0, which alone writes it.
      dist::Communicator& ranks = dist::Communicator::world();
      at::Tensor next = next_inputs.defined() ? next_inputs.all() : at::Tensor();
      if (next.defined() && sharded_windows_)
        next = ranks.gather_rows_to(0, next, fmt::format("layer {}: gather the next inputs", index));
      if (ranks.is_root())
        checkpoints_->save(index, layer, states, passes_, result_.pass_seconds, next);
    }
    write_to_sink(layer, index);
  }

  /// A layer restored from its checkpoint: streamed again as the interrupted run streamed it.
  void replay_done(core::DecoderLayer& layer, int64_t index) { write_to_sink(layer, index); }

  void write_to_sink(core::DecoderLayer& layer, int64_t index) {
    if (!sink_) return;
    auto& states = result_.layers[static_cast<size_t>(index)];
    sink_(index, layer, states);
    for (auto& [name, state] : states) {  // written: only the reports stay
      state.quantized.reset();
      state.fp_quantized.reset();
    }
  }

  // The statistics of a layer's first subset see the float model on float inputs when nothing
  // ran before them: the first layer, or any layer when the next layer's inputs are the float
  // outputs (AWQ, SmoothQuant). Those are shared by every recipe; later subsets and
  // quantized-propagation layers see what this recipe's scheme and passes did.
  std::optional<std::string> cache_scope(int64_t layer, int64_t step) const override {
    for (const auto& pass : passes_) {
      if (pass->traits().role == PassRole::ModelTrainer) return fmt::format("{:016x}", recipe_.processing_hash());
    }
    if (step == 0 && (layer == 0 || !propagate_quantized())) return std::string();
    return fmt::format("{:016x}", recipe_.processing_hash());
  }

 private:
  const core::Model& model_;
  const core::Recipe& recipe_;
  std::vector<std::unique_ptr<Pass>>& passes_;
  QuantizationResult& result_;
  const LayerSink& sink_;
  LayerCheckpoints* checkpoints_;
  bool sharded_windows_ = true;  ///< each rank holds its share of the calibration windows
  std::unique_ptr<Pass> rtn_fallback_ = make_rtn(core::Options());
};

/// Restores the layers `checkpoints` holds (replaying the sink on each, then releasing it when
/// streaming) and returns the first layer still to do; `inputs` gets its saved inputs.
int64_t restore_layers(core::Model& model, std::vector<std::unique_ptr<Pass>>& passes,
                       QuantizationResult& result, PassDriver& driver,
                       const LayerCheckpoints& checkpoints, bool release, at::Tensor& inputs) {
  const int64_t done = checkpoints.last_complete();
  if (done < 0) return 0;
  CALQ_CHECK(done < model.n_layers(), "{}: holds layer {}, but the model has {} layers",
             checkpoints.dir(), done, model.n_layers());
  log::info("resuming: layers 0..{} restored from {}", done, checkpoints.dir());
  result.layers.resize(static_cast<size_t>(done + 1));
  for (int64_t i = 0; i <= done; ++i) {
    core::DecoderLayer& layer = model.layer(i);
    const bool last = i == done;
    result.layers[static_cast<size_t>(i)] = checkpoints.restore(
        i, layer, last ? &passes : nullptr, last ? &result.pass_seconds : nullptr);
    driver.replay_done(layer, i);
    if (release) model.release(i);
  }
  inputs = checkpoints.next_inputs(done);
  return done + 1;
}

}  // namespace

calib::OffloadPolicy offload_policy(const core::CalibrationSection& c) {
  calib::OffloadPolicy policy;
  policy.mode = c.offload;
  policy.dir = c.offload_dir;
  double budget = c.max_memory_gb * 1e9;
  if (const double free_mb = core::available_mb(); free_mb > 0)
    budget = std::min(budget, 0.5 * free_mb * 1024.0 * 1024.0);
  policy.budget_bytes = static_cast<int64_t>(budget);
  return policy;
}

bool propagates_quantized(const std::vector<std::unique_ptr<Pass>>& passes) {
  for (const auto& pass : passes) {
    if (pass->traits().propagation == Propagation::Quantized) return true;
  }
  return false;
}

std::vector<std::unique_ptr<Pass>> build_passes(const core::Recipe& recipe) {
  std::vector<std::unique_ptr<Pass>> passes;
  bool quantizes = false;
  for (size_t i = 0; i < recipe.passes.size(); ++i) {
    const core::PassEntry& entry = recipe.passes[i];
    std::unique_ptr<Pass> pass = make_pass(entry.name, entry.options, recipe.scheme);
    check_pass_order(recipe, i, passes, *pass);
    quantizes |= pass->traits().role == PassRole::Quantizer;
    passes.push_back(std::move(pass));
  }
  if (!quantizes) {
    // "passes: none = plain RTN to the scheme" (docs/architecture.md §5); transforms alone
    // also end in RTN.
    passes.push_back(make_pass("rtn", core::Options(), recipe.scheme));
  }
  return passes;
}

void check_passes(const std::vector<std::unique_ptr<Pass>>& passes, const core::Model& model) {
  for (const auto& pass : passes) pass->check_model(model);
}

bool needs_calibration(const std::vector<std::unique_ptr<Pass>>& passes,
                       const core::Model& model, const core::Recipe& recipe) {
  if (recipe.scheme.activations && !recipe.scheme.activations->dynamic) return true;
  if (recipe.scheme.mixed_precision) return true;  // the allocation reads float Hessians
  for (const auto& pass : passes) {
    if (pass->traits().reads.calibration_windows) return true;
  }
  for (const LinearTarget& target : targets_of(recipe, model.layer_schema(0).linear_names())) {
    for (const auto& pass : passes) {
      if (pass->needs(target).any()) return true;
    }
  }
  return false;
}

std::vector<std::map<std::string, core::QuantizedTensor>> quantized_linears(
    const QuantizationResult& result) {
  std::vector<std::map<std::string, core::QuantizedTensor>> out(result.layers.size());
  for (size_t i = 0; i < result.layers.size(); ++i) {
    for (const auto& [name, state] : result.layers[i]) {
      if (state.quantized) out[i].emplace(name, *state.quantized);
    }
  }
  return out;
}

QuantizationResult quantize_model(core::Model& model, const core::Recipe& recipe,
                                  std::vector<std::unique_ptr<Pass>>& passes,
                                  const calib::CalibrationSet* calibration, int64_t batch_size,
                                  calib::CacheUse cache, const LayerSink& sink,
                                  LayerCheckpoints* checkpoints) {
  check_passes(passes, model);
  QuantizationResult result;
  for (const auto& pass : passes) result.pass_names.push_back(pass->name());
  const auto start = Clock::now();
  for (const auto& pass : passes) {
    CALQ_CHECK(!pass->traits().reads.calibration_windows || calibration != nullptr,
               "{}: passes: {} needs calibration data; expected a calibration section",
               recipe.file, pass->name());
    const auto pass_start = Clock::now();
    pass->prepare(model, calibration);
    result.pass_seconds[pass->name()] +=
        std::chrono::duration<double>(Clock::now() - pass_start).count();
  }
  PassDriver driver(model, recipe, passes, result, sink, checkpoints);
  result.propagated_quantized = driver.propagate_quantized();
  at::Tensor resumed_inputs;
  const int64_t first_layer =
      checkpoints == nullptr ? 0
                             : restore_layers(model, passes, result, driver, *checkpoints,
                                              static_cast<bool>(sink), resumed_inputs);
  if (calibration != nullptr && needs_calibration(passes, model, recipe)) {
    result.used_calibration = true;
    calib::RunnerOptions options;
    options.batch_size = batch_size;
    options.cache = std::move(cache);
    options.release_layers = static_cast<bool>(sink);
    options.first_layer = first_layer;
    options.first_inputs = std::move(resumed_inputs);
    options.observe_all_experts = recipe.calibration &&
                                  recipe.calibration->moe == core::MoeCalibration::AllExperts;
    if (recipe.calibration) options.offload = offload_policy(*recipe.calibration);
    // A pass that reads the calibration windows itself (lkd trains on the layer's inputs) runs
    // on every window on every rank, so all ranks hold the same layer (docs/distributed.md).
    for (const auto& pass : passes)
      options.shard_windows = options.shard_windows && !pass->traits().reads.calibration_windows;
    driver.set_sharded_windows(options.shard_windows);
    calib::LayerwiseRunner runner(model, calibration->windows, options);
    runner.run(driver);
    result.activations = runner.placement();
    result.layer_timings = runner.timings();
  } else {
    // No statistics needed: visit the weights only, no forward passes.
    at::NoGradGuard no_grad;
    const calib::ActivationStore no_inputs;
    Progress progress("quantize layers", model.n_layers() - first_layer);
    for (int64_t i = first_layer; i < model.n_layers(); ++i) {
      core::DecoderLayer& layer = model.layer(i);
      driver.begin_layer(layer, i);
      const auto subsets = driver.schedule(layer);
      for (size_t k = 0; k < subsets.size(); ++k) {
        std::map<std::string, calib::LinearStats> stats;
        calib::LayerStep step{layer, model, i, static_cast<int64_t>(k), subsets[k], stats, no_inputs,
                              {}};
        driver.process(step);
      }
      driver.end_layer(layer, i);
      driver.layer_done(layer, i, no_inputs);
      if (sink) model.release(i);
      progress.step();
    }
  }
  for (const auto& pass : passes) {
    pass->finish();
    if (std::string summary = pass->summary_json(); !summary.empty())
      result.pass_summaries[pass->name()] = std::move(summary);
  }
  result.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return result;
}

}  // namespace calq::algorithms
