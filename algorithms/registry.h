// Passes by the name the recipe uses. One explicit list in registry.cpp (CTranslate2 style: no
// self-registering statics that a static library link could drop).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "algorithms/pass.h"

namespace calq::core {
class Options;
struct SchemeSection;
}  // namespace calq::core

namespace calq::algorithms {

/// Builds the pass `name` from its options (which it reads and finish()es). Unknown name ->
/// calq::Error "<file>: passes.<i>: unknown pass "x"; did you mean "y"?".
std::unique_ptr<Pass> make_pass(const std::string& name, const core::Options& options,
                                const core::SchemeSection& scheme);

std::vector<std::string> pass_names();

}  // namespace calq::algorithms
