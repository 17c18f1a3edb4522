// Rotary position embedding: a RopeSpec (core/model/rope_spec.h) turned into the inverse
// frequencies and the cos/sin scale of one forward. The arithmetic follows transformers'
// modeling_rope_utils.py (the _compute_*_parameters functions and dynamic_rope_update) step for
// step in float32, so calq's cos/sin tables equal transformers'; docs/howto-add-family.md states the one
// deliberate difference (dynamic and longrope are decided per window, not by the longest
// sequence a process has seen).
#pragma once

#include <cstdint>

#include <ATen/core/Tensor.h>

#include "core/model/rope_spec.h"

namespace calq::core {

/// The inverse frequencies of one forward over positions 0..seq_len-1, and the factor cos and
/// sin are multiplied by (transformers' attention_scaling). inv_freq is float32 [rotary_dim/2].
struct RopeFrequencies {
  at::Tensor inv_freq;
  double attention_scaling = 1.0;
};

/// Frequencies for a window of seq_len tokens (dynamic and longrope depend on it), on `device`.
RopeFrequencies rope_frequencies(const RopeSpec& spec, int64_t head_dim, int64_t seq_len,
                                 const at::Device& device);

/// Whether the frequencies depend on the window length (dynamic, longrope).
bool rope_depends_on_length(const RopeSpec& spec);

}  // namespace calq::core
