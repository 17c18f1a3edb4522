// report.json of `calq run` (docs/architecture.md §8): the resolved recipe, model, calibration
// protocol, per-pass per-layer per-linear figures, perplexities with their protocol, timing and
// peak memory. Numbers that matter live here so tables and plots are generated, never typed.
#pragma once

#include <memory>
#include <string>

#include <nlohmann/json_fwd.hpp>

namespace calq::core {
class Model;
struct Recipe;
struct PerplexityResult;
}  // namespace calq::core
namespace calq::calib {
struct CalibrationSet;
class StatsCache;
}
namespace calq::algorithms {
struct QuantizationResult;
}

namespace calq::run {

class RunReport {
 public:
  RunReport(const core::Recipe& recipe, const core::Model& model);
  ~RunReport();
  void set_calibration(const calib::CalibrationSet& set);
  /// What the calibration cache did in this run: hits (which layer/step), misses, bytes, size.
  void set_calibration_cache(const calib::StatsCache& cache);
  void set_quantization(const algorithms::QuantizationResult& result);
  void add_perplexity(const core::PerplexityResult& result, const std::string& path);
  /// eval.<key> from JSON text (eval.kl, eval.tasks).
  void set_eval_section(const std::string& key, const std::string& json);
  /// The export's figures (core::ExportResult::to_json()): format, path, re-read, lint.
  void set_export(const std::string& json);
  /// A top-level section from JSON text (e.g. "llm_int8": outlier fractions seen in evaluation).
  void set_section(const std::string& key, const std::string& json);
  /// Marks the report as the float model's (no quantization ran): "float": true.
  void set_float();
  /// "ranks": the world size the run had (core/dist) and the backend between them.
  void set_ranks(int world_size);
  /// What should dominate the peak (run/memory_estimate.h), reported beside the measured peak.
  void set_memory_estimate(const std::string& json);
  void finish(double total_seconds);
  std::string dump() const;

 private:
  const core::Recipe& recipe_;
  std::string memory_estimate_;
  std::unique_ptr<nlohmann::json> doc_;
};

}  // namespace calq::run
