// Sensitivity analysis and bit allocation (docs/algorithms.md §8). The sensitivity of a linear at a
// candidate (bits, group size) is the Hessian proxy tr(ΔW H ΔWᵀ) of round-to-nearest at that
// candidate, with H = 2XᵀX/n from the float model on the calibration windows: the increase of
// the linear's output squared error summed over outputs, per calibration sequence. No forward
// runs beyond the one calibration sweep (its statistics are the float model's, so the
// calibration cache serves them to every recipe).
//
// The allocator solves the multiple-choice knapsack "least summed sensitivity subject to
// Σ n_l·bpw(c_l) ≤ budget·Σ n_l" exactly, by dynamic programming over the budget discretised in
// units that round every cost up (the result never exceeds the budget).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "calib/stats_cache.h"
#include "core/recipe.h"

namespace calq::core {
class Model;
}

namespace calq::algorithms {

struct LinearSensitivity {
  int64_t layer = 0;
  std::string linear;  ///< uniform name
  int64_t out_features = 0;
  int64_t in_features = 0;
  std::vector<double> proxy;  ///< per candidate, in the section's order
};

/// Stored bits per weight of a candidate on a linear with `in_features` inputs: b-bit codes
/// plus a float16 scale per group and, for asymmetric grids, a b-bit zero per group
/// (b + (16 + b)/g; per channel g = in_features).
double stored_bits_per_weight(const core::MixedCandidate& c, bool sym, int64_t in_features);

/// The sensitivities of every targeted linear of `model` (float weights) at each candidate.
std::vector<LinearSensitivity> hessian_sensitivity(core::Model& model, const core::Recipe& recipe,
                                                   const at::Tensor& windows, int64_t batch_size,
                                                   calib::CacheUse cache = {});

struct BitAllocation {
  std::vector<size_t> choice;  ///< candidate index per LinearSensitivity
  double budget_bits = 0;
  double avg_bits = 0;         ///< achieved, stored bits per weight over all targeted weights
  double proxy_total = 0;      ///< Σ sensitivity of the choice
  /// "layers.<i>.<linear>" -> candidate: the overrides that realise the choice.
  std::vector<core::WeightOverride> overrides;
};

/// The least-sensitivity choice within `budget_bits`; throws calq::Error naming
/// scheme.mixed_precision.budget_bits when even the smallest candidates exceed it.
BitAllocation allocate_bits(const std::vector<LinearSensitivity>& linears,
                            const core::MixedPrecisionSection& section, bool sym);

/// `recipe` with the allocation's overrides appended to scheme.overrides.
core::Recipe with_allocation(const core::Recipe& recipe, const BitAllocation& allocation);

}  // namespace calq::algorithms
