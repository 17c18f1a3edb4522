// One `calq run`, callable in process: `calq sweep` runs many of them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace calq::cli {

struct RunRequest {
  std::string recipe;
  std::vector<std::string> overrides;  ///< --set key.path=value, in order
  std::string out;                     ///< empty: out/<recipe name>
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
  /// Replace output directories calq did not write (--overwrite); a file is never replaced.
  bool overwrite = false;
  /// --logits FILE: the first eval text's windows and the quantized model's float32 logits on
  /// them (cli/window_logits.h); empty: none.
  std::string logits;
  /// Set by `calq run --resume DIR`: continue the run whose state DIR/resume holds.
  bool resuming = false;
};

/// The run `calq run --resume DIR` continues: the request DIR/resume/run.json recorded when it
/// started (recipe, overrides and options), with out = DIR. Throws calq::Error naming DIR when
/// there is nothing to resume.
RunRequest resumed_request(const std::string& dir);

/// Loads, quantizes, exports and evaluates as the recipe says; writes out/report.json.
int run_recipe(const RunRequest& request);

/// --cache DIR, --cache-limit SIZE and --no-cache on a command that runs recipes. `default_dir`
/// (may be empty) is used unless --no-cache.
void add_cache_options(CLI::App& cmd, RunRequest& request, std::string default_dir = {});

}  // namespace calq::cli
