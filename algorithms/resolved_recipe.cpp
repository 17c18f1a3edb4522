#include "algorithms/resolved_recipe.h"

#include <utility>

#include "algorithms/pipeline.h"

namespace calq::algorithms {

ResolvedRecipe resolve_recipe(const core::Recipe& parsed) {
  core::Recipe recipe = parsed;
  for (core::PassEntry& entry : recipe.passes) entry.options = entry.options.detached();
  build_passes(recipe);  // each factory records the defaults it reads into its own copy
  // Detached again: the defaults become given values, so building these passes later (calq run)
  // reads them back and adds nothing.
  for (core::PassEntry& entry : recipe.passes) entry.options = entry.options.detached();
  std::string hash = recipe.hash_hex();
  return ResolvedRecipe{std::move(recipe), std::move(hash)};
}

ResolvedRecipe load_resolved_recipe(const std::string& path,
                                    const std::vector<std::string>& overrides) {
  return resolve_recipe(core::load_recipe(path, overrides));
}

}  // namespace calq::algorithms
