// A run's resumable state folder, <out>/resume (docs/architecture.md §2): run.json, what
// `calq run --resume DIR` needs to start the same run again, beside the per-layer checkpoints
// (algorithms/layer_checkpoints.h); removed when the run ends.
#pragma once

#include <string>
#include <vector>

#include "run/run.h"

namespace calq::core {
class Model;
struct Recipe;
}  // namespace calq::core

namespace calq::calib {
struct CalibrationSet;
}

namespace calq::run {

/// Where a run keeps its per-layer state, inside its output folder.
std::string state_dir_of(const std::string& out_dir);

/// Writes <state_dir>/run.json: the recipe (absolute), its overrides and the options a resumed
/// run must repeat.
void write_run_request(const core::Recipe& recipe, const RunOptions& options,
                       const std::string& state_dir);

/// The run `calq run --resume DIR` continues, as run.json recorded it, with out = DIR.
struct ResumedRun {
  std::string recipe;
  std::vector<std::string> overrides;
  RunOptions options;
};

/// Throws calq::Error naming DIR when there is nothing to resume.
ResumedRun resumed_run(const std::string& dir);

/// What the saved layers depend on: a resume under anything else would mix two runs.
std::string state_fingerprint(const core::Recipe& recipe, const RunOptions& options,
                              const calib::CalibrationSet* calibration, const core::Model& model);

/// A fresh run's state folder, removed again if the run ends in an error: an error leaves no
/// output (the run would fail the same way when resumed); only a kill leaves state behind. (The
/// output folder itself, if the run made it, goes with the run's OutputClaim.)
class StateFolder {
 public:
  explicit StateFolder(std::string dir) : dir_(std::move(dir)) {}
  ~StateFolder();
  StateFolder(const StateFolder&) = delete;
  StateFolder& operator=(const StateFolder&) = delete;
  void arm() { armed_ = true; }
  void disarm() { armed_ = false; }

 private:
  std::string dir_;
  bool armed_ = false;
};

}  // namespace calq::run
