#include "run/run_report.h"

#include <ATen/Parallel.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "algorithms/pipeline.h"
#include "calib/calibration_set.h"
#include "calib/stats_cache.h"
#include "core/eval/perplexity.h"
#include "core/resident_memory.h"
#include "core/model/model.h"
#include "core/recipe.h"
#include "core/version.h"

#ifndef CALQ_GIT_DESCRIBE
#define CALQ_GIT_DESCRIBE "unknown"
#endif

namespace calq::run {

RunReport::RunReport(const core::Recipe& recipe, const core::Model& model)
    : recipe_(recipe), doc_(std::make_unique<nlohmann::json>()) {
  nlohmann::json& d = *doc_;
  d["calq_version"] = core::calq_version();
  d["git"] = CALQ_GIT_DESCRIBE;
  d["model"] = {{"path", model.path()},
                {"family", core::family_name(model.config().family)},
                {"model_type", model.config().model_type},
                {"params", model.n_parameters()}};
  d["calibration"] = nullptr;
  d["threads"] = at::get_num_threads();
}

RunReport::~RunReport() = default;

void RunReport::set_calibration(const calib::CalibrationSet& set) {
  (*doc_)["calibration"] = {{"dataset", set.dataset},
                            {"path", set.path},
                            {"nsamples", set.windows.size(0)},
                            {"seqlen", set.windows.size(1)},
                            {"seed", set.seed},
                            {"replayed_offsets", set.replayed},
                            {"stream_tokens", set.stream_tokens},
                            {"windows_hash", fmt::format("{:016x}", set.hash)}};
}

void RunReport::set_calibration_cache(const calib::StatsCache& cache) {
  const calib::CacheCounters& c = cache.counters();
  (*doc_)["calibration_cache"] = {{"dir", cache.dir()},
                                  {"limit_bytes", cache.max_bytes()},
                                  {"size_bytes", c.size_bytes},
                                  {"hits", c.hits},
                                  {"misses", c.misses},
                                  {"stores", c.stores},
                                  {"bytes_read", c.bytes_read},
                                  {"bytes_written", c.bytes_written},
                                  {"evicted", c.evicted},
                                  {"skipped_too_large", c.skipped_too_large},
                                  {"reused", c.reused}};
}

void RunReport::set_quantization(const algorithms::QuantizationResult& result) {
  nlohmann::json passes = nlohmann::json::array();
  for (const std::string& name : result.pass_names) {
    nlohmann::json layers = nlohmann::json::array();
    for (size_t i = 0; i < result.layers.size(); ++i) {
      nlohmann::json linears = nlohmann::json::object();
      for (const auto& [linear, state] : result.layers[i]) {
        const auto it = state.reports.find(name);
        if (it == state.reports.end()) continue;
        nlohmann::json entry = nlohmann::json::object();
        for (const auto& [k, v] : it->second.figures) entry[k] = v;
        for (const auto& [k, v] : it->second.notes) entry[k] = v;
        for (const auto& [k, v] : it->second.flags) entry[k] = v;
        linears[linear] = entry;
      }
      if (!linears.empty()) layers.push_back({{"index", i}, {"linears", linears}});
    }
    const auto seconds = result.pass_seconds.find(name);
    passes.push_back({{"name", name},
                      {"seconds", seconds == result.pass_seconds.end() ? 0.0 : seconds->second},
                      {"layers", layers}});
    if (const auto summary = result.pass_summaries.find(name); summary != result.pass_summaries.end())
      passes.back()["summary"] = nlohmann::json::parse(summary->second);
  }
  nlohmann::json& d = *doc_;
  d["passes"] = passes;
  if (!result.experts.empty()) {
    // docs/moe.md: every routed expert with the calibration tokens it received; those below
    // calibration.min_expert_tokens also under "below_min_tokens" with the policy applied.
    const core::CalibrationSection defaults;
    const core::CalibrationSection& c = recipe_.calibration ? *recipe_.calibration : defaults;
    nlohmann::json experts = nlohmann::json::array();
    nlohmann::json below = nlohmann::json::array();
    for (const algorithms::ExpertCoverage& e : result.experts) {
      nlohmann::json entry = {{"layer", e.layer}, {"expert", e.expert}, {"tokens", e.tokens}};
      if (!e.policy.empty()) {
        entry["policy"] = e.policy;
        if (e.policy == "damp") entry["damp"] = e.damp;
        below.push_back(entry);
      }
      experts.push_back(entry);
    }
    d["moe"] = {{"calibration", core::moe_calibration_name(c.moe)},
                {"min_expert_tokens", c.min_expert_tokens},
                {"expert_policy", core::expert_policy_name(c.expert_policy)},
                {"expert_damp", c.expert_damp},
                {"experts", experts},
                {"below_min_tokens", below}};
  }
  d["quantization"] = {{"seconds", result.seconds},
                       {"used_calibration", result.used_calibration},
                       {"next_layer_inputs", result.propagated_quantized ? "quantized" : "float"}};
  if (result.used_calibration) {
    const calib::ActivationPlacement& a = result.activations;
    d["calibration_activations"] = {{"offload", a.offload},
                                    {"placement", a.on_disk ? "disk" : "ram"},
                                    {"dir", a.dir},
                                    {"bytes_per_copy", a.bytes},
                                    {"copies", a.copies},
                                    {"scratch_bytes", a.on_disk ? a.bytes * a.copies : 0},
                                    {"batch_windows", a.batch_windows}};
    // Where each layer's time went (issue 22: choose the next optimisation from data).
    nlohmann::json layers = nlohmann::json::array();
    for (const calib::LayerTiming& t : result.layer_timings) {
      layers.push_back({{"layer", t.layer},
                        {"load_s", t.load_s},
                        {"float_outputs_s", t.float_outputs_s},
                        {"statistics_s", t.statistics_s},
                        {"process_s", t.process_s},
                        {"propagate_s", t.propagate_s},
                        {"peak_rss_mb", t.peak_rss_mb}});
    }
    d["timing"]["layers"] = layers;
  }
}

void RunReport::add_perplexity(const core::PerplexityResult& r, const std::string& path) {
  (*doc_)["eval"]["perplexity"].push_back({{"dataset", r.dataset},
                                           {"path", path},
                                           {"join", r.join},
                                           {"seqlen", r.seqlen},
                                           {"tokens", r.tokens},
                                           {"windows", r.windows},
                                           {"nll", r.nll},
                                           {"ppl", r.ppl},
                                           {"seconds", r.seconds},
                                           {"tokens_per_second", r.tokens_per_second()}});
}

void RunReport::set_export(const std::string& json) {
  (*doc_)["export"] = nlohmann::json::parse(json);
}

void RunReport::set_eval_section(const std::string& key, const std::string& json) {
  (*doc_)["eval"][key] = nlohmann::json::parse(json);
}

void RunReport::set_section(const std::string& key, const std::string& json) {
  (*doc_)[key] = nlohmann::json::parse(json);
}

void RunReport::set_float() { (*doc_)["float"] = true; }

void RunReport::set_ranks(int world_size) {
  (*doc_)["ranks"] = {{"world_size", world_size}, {"backend", world_size > 1 ? "gloo" : "none"}};
}

void RunReport::finish(double total_seconds) {
  nlohmann::json& d = *doc_;
  // Pass defaults are only known once the passes have read their options: resolve last.
  d["recipe"] = nlohmann::json::parse(recipe_.resolved_json());
  d["recipe_hash"] = recipe_.hash_hex();
  if (!d.contains("export")) d["export"] = nullptr;
  d["timing"]["total_s"] = total_seconds;  // beside the per-layer breakdown, when there is one
  d["memory"] = {{"peak_rss_mb", core::peak_resident_mb()}};
  if (!memory_estimate_.empty()) d["memory"]["estimate"] = nlohmann::json::parse(memory_estimate_);
}

void RunReport::set_memory_estimate(const std::string& json) { memory_estimate_ = json; }

std::string RunReport::dump() const { return doc_->dump(2); }

}  // namespace calq::run
