// Which linears of a layer the recipe quantizes and to what: scheme.targets (globs over uniform
// names) and scheme.overrides (per-linear bits / group size / sym) resolved into a QuantSpec per
// linear. Also the true-sequential order of a family's linears (algorithms.md §3.2).
#pragma once

#include <string>
#include <vector>

#include "algorithms/pass.h"

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

/// A norm and the linears that read its output (SmoothQuant's pairs, AWQ's norm-fed groups):
/// norm.attn → q,k,v; norm.mlp → gate,up (OPT/GPT-2: fc1). A per-channel scale folded into the
/// norm is undone exactly by scaling those linears' input columns.
struct NormFedGroup {
  std::string norm;
  std::vector<std::string> linears;
};

/// The norm-fed groups of a layer with these linears, in execution order.
std::vector<NormFedGroup> norm_fed_groups(const std::vector<std::string>& linear_names);

/// Subsets in true-sequential order (IST-DASLab/gptq llama_sequential): q,k,v → o → gate,up →
/// down (OPT/GPT-2: q,k,v → o → fc1 → fc2), restricted to `linear_names` present in the layer.
std::vector<std::vector<std::string>> true_sequential_subsets(
    const std::vector<std::string>& linear_names);

}  // namespace calq::algorithms
