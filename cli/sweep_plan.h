// What `calq sweep` runs (docs/architecture.md §7): groups of recipes, each group with the grids
// whose cross product it runs and the --set overrides every run of it gets. The command line
// gives one group (its recipes, --grid, --set); a sweep file (configs/sweeps/*.yaml) gives
// several, so that variants of a protocol (bits, group size, act-order, alpha) are grid values
// of one recipe rather than copies of it.
//
// Sweep file:
//   sweep:
//     - recipes: [../sotu_gptq_w4g128.yaml, ../sotu_awq_w4g128.yaml]  # relative to this file
//       grid: {scheme.weights.bits: [4, 3]}   # optional; keys cross in file order
//       set: {calibration.nsamples: 32}       # optional; not part of the run names
#pragma once

#include <string>
#include <vector>

namespace calq::cli {

struct SweepGrid {
  std::string key;                  ///< scheme.weights.bits
  std::vector<std::string> values;  ///< each a YAML value as --set takes it
};

struct SweepGroup {
  std::vector<std::string> recipes;
  std::vector<SweepGrid> grids;
  std::vector<std::string> sets;  ///< "key.path=value", applied before the grid's values
};

/// "--grid key.path=v1,v2,...".
SweepGrid parse_grid_option(const std::string& text);

/// true when `path` is a YAML file whose top level holds `sweep:` (else it is taken as a recipe).
bool is_sweep_file(const std::string& path);

/// The groups of a sweep file, recipe paths made absolute against the file's folder. Throws
/// calq::Error naming the file and the entry for anything else than the layout above.
std::vector<SweepGroup> load_sweep_file(const std::string& path);

}  // namespace calq::cli
