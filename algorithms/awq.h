// AWQ (Lin et al. 2024; docs/algorithms.md §4): for each layer, per-channel scales searched on the
// float block for every scaling group of the family (awq_scale_search.h), all applied at once, then
// the clip search on the scaled weights (awq_clip.h); the quantizing pass that follows (implicit
// rtn, or gptq) quantizes the result. Statistics of the scaled linears are rescaled
// (calib::rescale_inputs) so that pass sees x/s. YAML:
//   awq: {flavor: llm-awq|autoawq, n_grid: 20, duo_scaling: false|true|both, clip: true,
//         max_shrink: 0.5, clip_grid: 20, clip_tokens: 512, max_chunk_memory: 1G,
//         propagate: float|quantized}
#pragma once

#include <memory>

#include "algorithms/awq_clip.h"
#include "algorithms/awq_scale_search.h"
#include "algorithms/pass.h"

namespace calq::core {
struct SchemeSection;
}

namespace calq::algorithms {

struct AwqOptions {
  ScaleSearchOptions search;
  bool clip = true;
  ClipOptions clip_options;
  bool propagate_quantized = false;  ///< false: the next layer sees the float output (§2, §4.5)
};

/// Reads and checks the options (flavor's default duo_scaling: false for llm-awq, true for
/// autoawq; duo_scaling with llm-awq is refused: llm-awq has no such option) and the scheme
/// (integer grids only, per-channel or per-group). Every error is one line naming the key path.
std::unique_ptr<Pass> make_awq(const core::Options& options, const core::SchemeSection& scheme);

}  // namespace calq::algorithms
