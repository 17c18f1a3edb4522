// Rotary position embedding: a RopeSpec (core/model/rope_spec.h) turned into the inverse
// frequencies and the cos/sin scale of one forward. The arithmetic follows transformers'
// modeling_rope_utils.py (the _compute_*_parameters functions and dynamic_rope_update) step for
// step in float32, so calq's cos/sin tables equal transformers'; docs/howto-add-family.md states the one
// deliberate difference (dynamic and longrope are decided per window, not by the longest
// sequence a process has seen).
#pragma once

#include <cstdint>
#include <utility>

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

/// cos and sin [seq_len, head_dim] in `dtype` for positions past..past+seq_len-1; `cached` holds
/// the frequencies of types that do not depend on the length (recomputed for the others, for a
/// window of past + seq_len tokens). The rows are those of the table for past + seq_len
/// positions, computed whole and sliced, so a decoding step's rows equal a full forward's bit for
/// bit (a sliced computation may round cos/sin differently in the vectorised loop's tail).
std::pair<at::Tensor, at::Tensor> rope_tables(const RopeSpec& spec, const RopeFrequencies& cached,
                                              int64_t head_dim, int64_t seq_len,
                                              c10::ScalarType dtype, int64_t past = 0);

/// transformers apply_rotary_pos_emb on x [B, S, n, hd] with cos, sin [S, 1, hd].
at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);

/// Whether the frequencies depend on the window length (dynamic, longrope).
bool rope_depends_on_length(const RopeSpec& spec);

}  // namespace calq::core
