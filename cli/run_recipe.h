// One `calq run`, callable in process: `calq sweep` runs many of them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace calq::cli {

struct RunRequest {
  std::string recipe;
  std::vector<std::string> overrides;  ///< --set key.path=value, in order
  std::string out;                     ///< empty: out/<recipe name>
  int64_t batch_size = 8;
  /// Evaluate the float model only (the FP row of a sweep): no calibration, passes or export.
  bool float_only = false;
};

/// Loads, quantizes, exports and evaluates as the recipe says; writes out/report.json.
int run_recipe(const RunRequest& request);

/// The hash report.json records for this recipe and overrides (resumed sweeps compare it).
std::string recipe_hash(const std::string& recipe_path, const std::vector<std::string>& overrides);

}  // namespace calq::cli
