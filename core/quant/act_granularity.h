// How activations share quantization parameters (docs/algorithms.md §1.2): one (s, z) per token
// (row of X, dynamic) or one for the whole tensor (dynamic, or static from calibration). A
// header of its own so the recipe can name it without pulling in ATen.
#pragma once

namespace calq::core {

enum class ActGranularity { PerToken, PerTensor };

}  // namespace calq::core
