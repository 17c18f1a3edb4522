// One quantization run as a library call (docs/architecture.md §2): from a resolved recipe to
// report.json — output checks, model load, calibration, the statistics cache, mixed precision,
// the passes, streaming, export before evaluation, perplexity. `calq run` and `calq sweep` call
// it after parsing their arguments; tests call it directly.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace calq::core {
struct PerplexityResult;
}

namespace calq::algorithms {
struct ResolvedRecipe;
}

namespace calq::run {

struct RunOptions {
  std::string out;  ///< the folder report.json (and resume/) go to
  int64_t batch_size = 8;
  /// Evaluate the float model only (the FP row of a sweep): no calibration, passes or export.
  bool float_only = false;
  /// Calibration cache folder (calib/stats_cache.h); empty: no cache.
  std::string cache_dir;
  int64_t cache_max_bytes = int64_t{2} << 30;
  bool no_cache = false;
  /// Bounded memory: each layer is written to the checkpoint (recipe `save`) as soon as it is
  /// quantized and then freed; evaluation reads the written checkpoint.
  bool stream = false;
  /// Keep no per-layer state in <out>/resume (then a killed run cannot be resumed).
  bool no_resume_state = false;
  /// Replace output directories calq did not write; a file is never replaced.
  bool overwrite = false;
  /// The first eval text's windows and the quantized model's float32 logits on them
  /// (run/window_logits.h); empty: none.
  std::string logits;
  /// Continue the run whose state <out>/resume holds (run/run_state.h).
  bool resuming = false;
  /// Called with each perplexity as soon as it is measured (`calq run` prints it).
  std::function<void(const core::PerplexityResult&)> on_perplexity;
};

/// Runs the recipe as RunOptions say and writes <out>/report.json; returns its text.
std::string run_recipe(const algorithms::ResolvedRecipe& recipe, const RunOptions& options);

}  // namespace calq::run
