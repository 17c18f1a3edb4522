// The rules a recipe's passes must follow among themselves and with the run's outputs
// (docs/architecture.md §5), read from each pass's declared traits (algorithms/pass_traits.h).
// Every refusal is one calq::Error line naming the recipe key passes.<i>.<name>.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

#include "algorithms/pass.h"

namespace calq::core {
struct Recipe;
}

namespace calq::algorithms {

/// Checks that `pass`, built from recipe.passes[index], may follow `earlier` (the passes built
/// from the entries before it): roles in order (transforms and trainers, one quantizer,
/// refinements), no pass twice, every declared MustPrecede, refinements only after a quantizer
/// that accepts them, float weight formats only for passes that declare them.
void check_pass_order(const core::Recipe& recipe, size_t index,
                      const std::vector<std::unique_ptr<Pass>>& earlier, const Pass& pass);

/// Checks the run's outputs against the passes: save.format against fake_export_only, and
/// `stream` (calq run --stream) against not_streamable.
void check_pass_outputs(const core::Recipe& recipe,
                        const std::vector<std::unique_ptr<Pass>>& passes, bool stream);

}  // namespace calq::algorithms
