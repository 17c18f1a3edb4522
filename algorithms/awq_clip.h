// AWQ's activation-aware clip search (docs/algorithms.md §4.4; llm-awq auto_clip.py, AutoAWQ
// _search_best_clip): per (output row, input group), the symmetric clamp ±m·max|W| that minimises
// the squared error of the group's partial dot products over a token subsample, with the group
// quantizer refitted on the clamped weights. Runs on the AWQ-scaled weights and inputs.
#pragma once

#include <cstdint>
#include <string>

#include <ATen/core/Tensor.h>

#include "core/model/layer_schema.h"
#include "core/quant/quantizer.h"

namespace calq::algorithms {

struct ClipOptions {
  double max_shrink = 0.5;  ///< candidates shrink the range by at most this fraction
  int grid = 20;            ///< candidates m = 1 − i/grid, i = 0 … ⌊max_shrink·grid⌋ − 1
  int64_t n_tokens = 512;   ///< token subsample: every max(1, N / n_tokens)-th token
  /// Bytes one chunk of the error evaluation may hold (the awq pass's max_chunk_memory, 1 GiB
  /// as AutoAWQ's): the subsample's inputs split by group and, per row batch, the group dot
  /// products of the float and the candidate weights.
  int64_t max_chunk_memory = int64_t{1} << 30;
};

struct ClipResult {
  at::Tensor max_val;    ///< [out, n_groups] float32: the chosen clamp bound m*·max|W|
  at::Tensor shrink;     ///< [out, n_groups] float32: the chosen factor 1 − i*/grid
  int64_t n_tokens = 0;  ///< tokens in the subsample
  int64_t row_batch = 0;     ///< output rows per batch
  int64_t token_chunk = 0;   ///< subsample tokens per chunk (n_tokens: one chunk)
};

/// §4.4 steps 1–4. w: [out, in] weight; x: [N, in] its inputs (any float dtypes; the search runs
/// in float32). Groups follow `spec` (per channel: one group of all columns); where the group size
/// does not divide `in` the last group is shorter (calq extension: the references need g | in).
/// Output rows go in batches of 256 when out % 256 == 0, else 64 (the last batch may be shorter,
/// where the references require a divisor); rows are independent, so batching changes nothing.
/// Memory (options.max_chunk_memory): when a batch's dot products [groups, tokens, rows] exceed
/// the budget the row batch shrinks (down to 16 rows); only then are the subsample's tokens cut
/// into chunks, each chunk's squared errors summed in float32 and accumulated in double, where a
/// single chunk takes the float32 mean over tokens as the references do.
/// Ŵ of a candidate is core::fake_quantize of the clamped weight: the quantizer the pass that
/// follows applies, scales rounded to spec.scale_dtype as stored.
ClipResult awq_clip_search(const at::Tensor& w,
                           const at::Tensor& x,
                           const core::QuantSpec& spec,
                           const ClipOptions& options);

/// §4.4 step 5: w[o, c] ← clamp(w[o, c], −max_val[o, g(c)], max_val[o, g(c)]) in place, in w's
/// dtype, with the groups of `spec`.
void apply_clip(at::Tensor& w, const at::Tensor& max_val, const core::QuantSpec& spec);

/// llm-awq skips the clip search of linears whose name contains q_, k_, query, key or Wqkv: by
/// role, the query and key projections (their outputs meet only in q·kᵀ).
bool awq_skips_clip(core::LinearRole role);

}  // namespace calq::algorithms
