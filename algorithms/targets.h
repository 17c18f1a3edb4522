// Which linears of a layer the recipe quantizes and to what: scheme.targets (globs over uniform
// names) and scheme.overrides (per-linear bits / group size / sym) resolved into a QuantSpec per
// linear. Also the norm-fed groups of a layer, read from its family's schema.
#pragma once

#include <string>
#include <vector>

#include "algorithms/pass.h"
#include "core/model/layer_schema.h"

namespace calq::core {
struct SchemeSection;
}

namespace calq::algorithms {

/// fnmatch-style glob: '*' any run, '?' one character. "attn.*" matches "attn.q".
bool glob_match(const std::string& pattern, const std::string& name);

/// The QuantSpec for `linear` of layer `layer` (overrides applied in file order), or nullopt if
/// not targeted. Overrides "layers.<i>.<linear>" apply only when `layer` is known (>= 0).
std::optional<LinearTarget> resolve_target(const core::SchemeSection& scheme,
                                           const std::string& linear, int64_t layer = -1);

/// A norm and the linears that read its output (SmoothQuant's pairs, AWQ's norm-fed groups),
/// as the family's schema declares them (core::LayerSchema::norm_fed_pairs). A per-channel scale
/// folded into the norm is undone exactly by scaling those linears' input columns.
struct NormFedGroup {
  std::string norm;
  std::vector<std::string> linears;
};

/// The norm-fed groups of a layer, in execution order.
std::vector<NormFedGroup> norm_fed_groups(const core::LayerSchema& schema);

}  // namespace calq::algorithms
