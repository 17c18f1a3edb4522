// The recipe as an explicit value: parse (core::load_recipe) → resolve (every pass built once on
// its own copy of its options, keeping the defaults it read) → hash. report.json's "recipe", the
// recipe hash that `calq sweep` resumes by and the calibration cache's processing hash are
// computed from this value only, never from whether or when passes were built
// (docs/architecture.md §2.1).
#pragma once

#include <string>
#include <vector>

#include "core/recipe.h"

namespace calq::algorithms {

struct ResolvedRecipe {
  core::Recipe recipe;  ///< pass options hold every default their pass reads, as given values
  std::string hash;     ///< recipe.hash_hex(), 16 hex digits
};

/// Builds the passes of `parsed` (build_passes: option and order errors as usual) on detached
/// copies of their options and returns the recipe with those copies. `parsed` is not changed.
ResolvedRecipe resolve_recipe(const core::Recipe& parsed);

/// core::load_recipe, then resolve_recipe.
ResolvedRecipe load_resolved_recipe(const std::string& path,
                                    const std::vector<std::string>& overrides = {});

}  // namespace calq::algorithms
