// AWQ's per-channel scale search (docs/algorithms.md §4.1–4.3): the scaling groups of each decoder
// family, the candidate scales s = x̄^r (llm-awq) or x̄^r / w̄^(1−r) (AutoAWQ duo_scaling), the
// grid search that keeps the ratio whose quantized inspected module best matches the float one,
// and the folding of the chosen s into the layer (1/s into the prev op, s into the columns).
// Used by the awq pass (awq.cpp) and by tests that check the folding leaves the float layer as is.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "core/model/layer_schema.h"
#include "core/model/model_config.h"
#include "core/quant/quantizer.h"

namespace calq::core {
class DecoderLayer;
class Model;
}  // namespace calq::core

namespace calq::calib {
struct LinearStats;
}

namespace calq::algorithms {

enum class AwqFlavor {
  LlmAwq,   ///< mit-han-lab/llm-awq auto_scale.py
  AutoAwq,  ///< casper-hansen/AutoAWQ quantizer.py: duo_scaling, inf/NaN scales reset to 1
};

/// AutoAWQ's `duo_scaling`; Both is llm-compressor's: half the grid with each formula.
enum class DuoScaling { Off, On, Both };

/// Whose output defines a group's loss (§4.1 "inspected module"); the family's schema says.
using Inspect = core::Inspect;

/// One scaling group: 1/s is folded into `prev_op`, s multiplies the columns of `linears`.
struct ScaleGroup {
  std::string prev_op;               ///< "norm.attn", "norm.mlp" or a linear ("attn.v", "mlp.up")
  std::vector<std::string> linears;  ///< the scaled linears; all read the same input
  Inspect inspect = Inspect::Linear;
  std::string inspected_linear;  ///< with Inspect::Linear: the linear whose output is compared
  /// The input linear is a routed expert's: its inputs are the tokens routed to it, not windows.
  bool routed_inputs = false;
  /// With a linear prev_op: its output rows [prev_rows_begin, + prev_rows) that 1/s divides
  /// (core::ScalingPair's slice; prev_rows 0: every row).
  int64_t prev_rows_begin = 0;
  int64_t prev_rows = 0;
  bool prev_is_norm() const { return prev_op.rfind("norm.", 0) == 0; }
  std::string describe() const;  ///< "norm.attn -> attn.q,attn.k,attn.v"
};

/// A group of §4.1 this layer cannot scale, and why (reports, tests).
struct SkippedGroup {
  std::string group;                 ///< "attn.v -> attn.o"
  std::vector<std::string> linears;  ///< the linears it would have scaled
  std::string reason;
};

struct BlockGroups {
  std::vector<ScaleGroup> groups;  ///< in execution order
  std::vector<SkippedGroup> skipped;
};

/// §4.1: the scaling pairs the layer's schema declares (core::LayerSchema::scaling), restricted
/// to groups whose scaled linears are all in `targeted` (a group with an untargeted scaled
/// linear is skipped: its quantizer is unknown). A pair the schema refuses (GPT-2's fc1 → fc2
/// across GELU) is reported as skipped with the schema's reason; a linear → linear pair is
/// skipped when the two weights' shapes differ (llm-awq's v → o rule: grouped-query attention).
BlockGroups awq_scale_groups(const core::LayerSchema& schema,
                             core::DecoderLayer& layer,
                             const std::vector<std::string>& targeted);

/// Default bound on what one chunk of a loss evaluation holds (AutoAWQ's max_chunk_memory, 1 GiB).
constexpr int64_t kAwqDefaultChunkMemory = int64_t{1} << 30;

struct ScaleSearchOptions {
  AwqFlavor flavor = AwqFlavor::LlmAwq;
  int n_grid = 20;
  DuoScaling duo_scaling = DuoScaling::Off;
  /// Bytes one chunk of windows may hold while the losses are evaluated: the inspected module's
  /// float and candidate outputs, their difference and the module's own activations
  /// (scale_search_window_bytes), plus the candidates' quantized weights when they are kept.
  int64_t max_chunk_memory = kAwqDefaultChunkMemory;
};

/// One candidate of the grid: ratio k/n and which formula.
struct ScaleCandidate {
  double ratio = 0.0;
  bool duo = false;
};

/// §4.2 step 4's grid in search order: k/n_grid for k < n_grid (1.0 never), or with Both
/// (k/n, off), (k/n, on) for k < n = n_grid/2 (llm-compressor's product(range(n), [False, True])).
std::vector<ScaleCandidate> scale_candidates(const ScaleSearchOptions& options);

/// §4.2 step 4, first bullets: s = max(x̄^r, 1e−4) or max(x̄^r / (w̄^(1−r) + 1e−4), 1e−4), then
/// s / sqrt(max s · min s); AutoAWQ also resets inf/NaN to 1. x_mean, w_mean: [in] float32
/// (w_mean may be undefined when !duo). Returns [in] float32.
at::Tensor candidate_scales(const at::Tensor& x_mean,
                            const at::Tensor& w_mean,
                            const ScaleCandidate& candidate,
                            AwqFlavor flavor);

/// §4.2 step 2: w̄ [in] float32 of weights [out_i, in] stacked along rows: |W| / (max|W| of its
/// (row, group) + 1e−6), averaged over rows. group_size −1 (per channel) is one group per row; a
/// group size that does not divide `in` leaves a shorter last group (calq extension).
at::Tensor weight_mean(const std::vector<at::Tensor>& weights, int64_t group_size);

struct GroupScales {
  ScaleGroup group;
  at::Tensor scales;  ///< [in] float32, the chosen s
  ScaleCandidate best;
  double loss = 0.0;        ///< mean((Y − Ŷ)²) of the chosen candidate
  double loss_first = 0.0;  ///< of the first candidate (ratio 0: plain quantization for llm-awq)
  int64_t chunk_windows = 0;  ///< windows (routed experts: tokens) per chunk of the loss
  int64_t n_chunks = 0;       ///< chunks the inputs were evaluated in
};

/// Estimated bytes one window (routed experts: one token, seq = 1) of `group`'s loss evaluation
/// holds at once, in float32: Y, Ŷ and Y − Ŷ of the inspected output, plus the module's own
/// activations — the scaled linears' outputs twice (projections and their RoPE'd or activated
/// copies) and, for attention, the [heads, seq, seq] scores twice (scores, softmax). An
/// estimate for chunking, not a measurement; mixture-of-experts MLPs are charged every expert.
int64_t scale_search_window_bytes(core::DecoderLayer& layer,
                                  const core::Model& model,
                                  const ScaleGroup& group,
                                  int64_t seq);

/// §4.2–4.3: searches every group on the layer as it is (weights restored after each candidate)
/// and returns the chosen scales; changes nothing. `stats` must hold mean_abs and inputs of each
/// group's first scaled linear (read, never modified); `specs` the quantizer of every scaled
/// linear. The inputs go in chunks of whole windows bounded by options.max_chunk_memory and by
/// 8192 tokens: per chunk the float output Y is computed once and every candidate's Ŷ compared
/// with it, so only one chunk's outputs exist at a time. Each chunk's Σ(Y − Ŷ)² is a float32 sum
/// accumulated in double, divided once by the element count at the end.
std::vector<GroupScales> search_block_scales(core::DecoderLayer& layer,
                                             const core::Model& model,
                                             const std::vector<ScaleGroup>& groups,
                                             const std::map<std::string, calib::LinearStats>& stats,
                                             const std::map<std::string, core::QuantSpec>& specs,
                                             const ScaleSearchOptions& options);

/// §4.2 step 6: prev op γ/s (β/s) or the group's slice of its output rows (all rows unless the
/// schema names a slice) and their bias /s; the scaled linears' columns ·s. s: [in] (any float
/// dtype; applied in each tensor's dtype).
void apply_group_scales(core::DecoderLayer& layer, const ScaleGroup& group, const at::Tensor& s);

}  // namespace calq::algorithms
