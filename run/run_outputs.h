// Where a run writes (core/io/output_dir.h, docs/robustness.md), checked before any work: the
// report folder and the export must each be new, empty or calq's own, apart from each other
// and from every input.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include "run/run.h"

namespace calq::core {
struct Recipe;
}

namespace calq::run {

struct RunOutputs {
  std::filesystem::path out;
  std::optional<std::filesystem::path> save;
};

RunOutputs check_run_outputs(const core::Recipe& recipe, const RunOptions& options);

}  // namespace calq::run
