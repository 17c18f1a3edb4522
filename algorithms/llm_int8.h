// LLM.int8() (Dettmers et al. 2022; docs/algorithms.md §6) as a quantizing pass: int8 absmax
// weights per output channel (RTN, no calibration), and at run time the outlier decomposition of
// every targeted linear (core/quant/llm_int8.h): input columns with any |x| ≥ threshold in a call
// go through a float matmul, the rest through per-token int8. Evaluation only: no checkpoint format
// stores the decomposition. YAML: `llm_int8: {threshold: 6.0, outlier_weights: float|int8}` with
// scheme.weights {bits: 8, group_size: -1, sym: true, grid: absmax} and no scheme.activations.
#pragma once

#include <memory>

#include "algorithms/pass.h"

namespace calq::core {
struct SchemeSection;
}

namespace calq::algorithms {

std::unique_ptr<Pass> make_llm_int8(const core::Options& options, const core::SchemeSection& scheme);

}  // namespace calq::algorithms
