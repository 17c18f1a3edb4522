// SmoothQuant (Xiao et al. 2023; docs/algorithms.md §5): per input channel of each norm-fed group
// (norm.attn → q,k,v; norm.mlp → gate,up or fc1), s = max|X|^α / max|W|^(1−α) moves activation
// outliers into the weights: γ ← γ/s (β ← β/s for LayerNorm), W[:, c] ← W[:, c]·s[c]. The float
// function is unchanged; the quantizing pass after it (RTN, GPTQ) sees the smoothed weights and,
// through calib::rescale_inputs, the smoothed statistics. YAML: `smoothquant: {alpha: 0.5,
// linears: [attn.q, attn.k, attn.v, mlp.gate, mlp.up]}` (default: every norm-fed linear).
#pragma once

#include <memory>
#include <vector>

#include <ATen/core/Tensor.h>

#include "algorithms/pass.h"

namespace calq::core {
class DecoderLayer;
struct Linear;
struct Norm;
struct SchemeSection;
}  // namespace calq::core

namespace calq::algorithms {

std::unique_ptr<Pass> make_smoothquant(const core::Options& options,
                                       const core::SchemeSection& scheme);

/// §5.2 steps 1–2: s[c] = max(a[c]^α / max(w[c], 1e−5)^(1−α), 1e−5) with w[c] the largest |W[:, c]|
/// over every linear of the group; computed in float32, returned in the weights' dtype.
at::Tensor smoothing_scales(const at::Tensor& act_absmax, const std::vector<const core::Linear*>& linears,
                            double alpha);

/// §5.2 steps 3–4: folds 1/s into the norm and s into the linears' input columns.
void apply_smoothing(core::Norm& norm, const std::vector<core::Linear*>& linears,
                     const at::Tensor& s);

struct NormFedGroup;

/// Both steps for one group of `layer`, from the absmax of the group's input; returns s.
at::Tensor smooth_group(core::DecoderLayer& layer, const NormFedGroup& group,
                        const at::Tensor& act_absmax, double alpha);

}  // namespace calq::algorithms
