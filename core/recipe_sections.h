// Internal to calq_core: validating the recipe's sections (model, calibration, scheme, eval,
// save) from the Options tree into the Recipe structs, and the resolved JSON for report.json.
// Split from recipe.cpp, which keeps YAML, --set and the passes list.
#pragma once

#include "core/options.h"
#include "core/recipe.h"

namespace calq::core::detail {

/// Checks the top-level keys, then reads every section except `passes` into `recipe`.
void read_sections(const Options& root, Recipe& recipe);

}  // namespace calq::core::detail
