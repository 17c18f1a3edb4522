#include "algorithms/awq_clip.h"

#include <algorithm>
#include <limits>
#include <vector>

#include <ATen/ATen.h>

#include "core/error.h"
#include "core/quant/quantized_tensor.h"

namespace calq::algorithms {
namespace {

// llm-awq auto_clip_layer: oc_batch_size = 256 if out % 256 == 0 else 64.
constexpr int64_t kRowBatchLarge = 256;
constexpr int64_t kRowBatchSmall = 64;
// The smallest row batch a tight budget shrinks to before the tokens are chunked instead.
constexpr int64_t kRowBatchMin = 16;
constexpr int64_t kFloatBytes = 4;

/// The input groups of a linear: n_full groups of g columns, then a tail of `tail` columns.
struct Groups {
  int64_t g = 0;
  int64_t n_full = 0;
  int64_t tail = 0;
  int64_t count() const { return n_full + (tail > 0 ? 1 : 0); }
};

Groups groups_of(int64_t in, const core::QuantSpec& spec) {
  CALQ_CHECK(spec.granularity != core::Granularity::PerTensor,
             "awq clip search: per-tensor weights ({}) have no per-group range to clip; expected "
             "per-channel or per-group quantization",
             core::describe(spec));
  const int64_t g =
      spec.granularity == core::Granularity::PerGroup ? std::min(spec.group_size, in) : in;
  return {g, in / g, in % g};
}

/// Column → group index [in] int64 on `device`.
at::Tensor column_groups(int64_t in, const Groups& groups, const at::Device& device) {
  return core::sequential_g_idx(in, groups.g).to(device).to(at::kLong);
}

/// max |w| per (row, group): w [rows, in] -> [rows, n_groups].
at::Tensor group_absmax(const at::Tensor& w, const Groups& groups) {
  const at::Tensor a = w.abs();
  std::vector<at::Tensor> parts;
  if (groups.n_full > 0) {
    parts.push_back(a.narrow(1, 0, groups.n_full * groups.g)
                        .reshape({a.size(0), groups.n_full, groups.g})
                        .amax(-1));
  }
  if (groups.tail > 0)
    parts.push_back(a.narrow(1, groups.n_full * groups.g, groups.tail).amax(-1, true));
  return at::cat(parts, 1);
}

/// Per-group partial dot products Σ_{c in group} x[t, c]·w[o, c]: the inputs split once into
/// x_full [n_full, T, g] and x_tail [T, tail]; w [rows, in] -> [n_groups, T, rows].
class GroupDots {
 public:
  GroupDots(const at::Tensor& x, const Groups& groups) : groups_(groups) {
    const int64_t t = x.size(0);
    if (groups.n_full > 0) {
      x_full_ = x.narrow(1, 0, groups.n_full * groups.g)
                    .reshape({t, groups.n_full, groups.g})
                    .permute({1, 0, 2})
                    .contiguous();
    }
    if (groups.tail > 0)
      x_tail_ = x.narrow(1, groups.n_full * groups.g, groups.tail).contiguous();
  }

  at::Tensor operator()(const at::Tensor& w) const {
    const int64_t rows = w.size(0);
    std::vector<at::Tensor> parts;
    if (groups_.n_full > 0) {
      const at::Tensor wg = w.narrow(1, 0, groups_.n_full * groups_.g)
                                .reshape({rows, groups_.n_full, groups_.g})
                                .permute({1, 2, 0});  // [n_full, g, rows]
      parts.push_back(at::bmm(x_full_, wg));
    }
    if (groups_.tail > 0) {
      const at::Tensor wt = w.narrow(1, groups_.n_full * groups_.g, groups_.tail);
      parts.push_back(at::matmul(x_tail_, wt.t()).unsqueeze(0));
    }
    return parts.size() == 1 ? parts.front() : at::cat(parts, 0);
  }

 private:
  Groups groups_;
  at::Tensor x_full_;
  at::Tensor x_tail_;
};

/// Row batch and token chunk for a budget: the reference's row batch and every token when they
/// fit; else fewer rows (results unchanged); else fewer tokens per chunk.
struct ClipPlan {
  int64_t rows = 0;
  int64_t tokens = 0;
};

ClipPlan plan_clip(int64_t out, int64_t in, int64_t n_groups, int64_t n_tokens, int64_t budget) {
  // Per token: its inputs split by group (in floats) and, per row, the float and candidate dot
  // products and their squared difference (3 floats per group).
  const auto bytes = [&](int64_t rows, int64_t tokens) {
    return kFloatBytes * tokens * (in + 3 * n_groups * rows);
  };
  ClipPlan plan{out % kRowBatchLarge == 0 ? kRowBatchLarge : kRowBatchSmall, n_tokens};
  if (bytes(plan.rows, n_tokens) <= budget)
    return plan;
  const int64_t per_row = kFloatBytes * n_tokens * 3 * n_groups;
  const int64_t fixed = kFloatBytes * n_tokens * in;
  const int64_t rows = budget > fixed ? (budget - fixed) / per_row : 0;
  plan.rows = std::max(std::min(plan.rows, kRowBatchMin), std::min(plan.rows, rows));
  if (bytes(plan.rows, n_tokens) > budget)
    plan.tokens = std::max<int64_t>(1, budget / bytes(plan.rows, 1));
  return plan;
}

/// Σ over the tokens of (dots(q) − reference)² per (row, group) of one candidate, [rows, n_groups]:
/// the float32 mean over the tokens (llm-awq's) when they form one chunk, else the float32 sum of
/// each chunk accumulated in double, divided once.
class ClipErrors {
 public:
  ClipErrors(const at::Tensor& xs, const Groups& groups, int64_t chunk) {
    for (int64_t t = 0; t < xs.size(0); t += chunk)
      chunks_.emplace_back(xs.narrow(0, t, std::min(chunk, xs.size(0) - t)), groups);
    n_tokens_ = xs.size(0);
  }

  /// Sets the float weights of a row batch, [rows, in].
  void set_reference(const at::Tensor& wb) {
    references_.clear();
    for (const GroupDots& dots : chunks_)
      references_.push_back(dots(wb));  // [n_groups, T, rows]
  }

  at::Tensor error(const at::Tensor& q) const {
    if (chunks_.size() == 1)
      return (chunks_.front()(q) - references_.front()).pow_(2).mean(1).t();
    at::Tensor sum;
    for (size_t i = 0; i < chunks_.size(); ++i) {
      const at::Tensor part = (chunks_[i](q) - references_[i]).pow_(2).sum(1).to(at::kDouble);
      sum = sum.defined() ? sum + part : part;
    }
    return (sum / static_cast<double>(n_tokens_)).to(at::kFloat).t();
  }

 private:
  std::vector<GroupDots> chunks_;
  std::vector<at::Tensor> references_;
  int64_t n_tokens_ = 0;
};

}  // namespace

bool awq_skips_clip(core::LinearRole role) {
  return core::feeds_attention_scores(role);
}

ClipResult awq_clip_search(const at::Tensor& w,
                           const at::Tensor& x,
                           const core::QuantSpec& spec,
                           const ClipOptions& options) {
  CALQ_ASSERT(w.dim() == 2 && x.dim() == 2 && x.size(1) == w.size(1) && x.size(0) > 0,
              "awq clip search: weight [out, in] and inputs [N, in] expected");
  const int n_candidates = static_cast<int>(options.max_shrink * options.grid);
  CALQ_ASSERT(n_candidates >= 1, "awq clip search without candidates");
  const at::Tensor wf = w.to(at::kFloat);
  const int64_t out = wf.size(0), in = wf.size(1);
  const Groups groups = groups_of(in, spec);
  const at::Tensor g_idx = column_groups(in, groups, wf.device());

  // §4.4 step 1: every step-th token, step = max(1, N // n_tokens).
  const int64_t step = std::max<int64_t>(1, x.size(0) / options.n_tokens);
  const at::Tensor xs = x.slice(0, 0, x.size(0), step).to(at::kFloat);
  const ClipPlan plan = plan_clip(out, in, groups.count(), xs.size(0), options.max_chunk_memory);
  ClipErrors errors(xs, groups, plan.tokens);

  ClipResult result;
  result.n_tokens = xs.size(0);
  result.row_batch = plan.rows;
  result.token_chunk = plan.tokens;
  result.max_val = at::empty({out, groups.count()}, wf.options());
  result.shrink = at::empty({out, groups.count()}, wf.options());
  for (int64_t first = 0; first < out; first += plan.rows) {
    const int64_t rows = std::min(plan.rows, out - first);
    const at::Tensor wb = wf.narrow(0, first, rows);
    const at::Tensor m0 = group_absmax(wb, groups);  // [rows, n_groups]
    errors.set_reference(wb);
    at::Tensor best_err = at::full_like(m0, std::numeric_limits<float>::infinity());
    at::Tensor best_m = m0.clone();
    at::Tensor best_shrink = at::ones_like(m0);
    for (int i = 0; i < n_candidates; ++i) {
      const double factor = 1.0 - static_cast<double>(i) / options.grid;  // Python float
      const at::Tensor m = m0 * factor;
      const at::Tensor bound = m.index_select(1, g_idx);  // [rows, in]
      const at::Tensor clamped = at::minimum(at::maximum(wb, -bound), bound);
      const at::Tensor err = errors.error(core::fake_quantize(clamped, spec));  // [rows, n_groups]
      const at::Tensor better = err < best_err;  // strict: the least shrink wins ties
      best_err = at::where(better, err, best_err);
      best_m = at::where(better, m, best_m);
      best_shrink = at::where(better, at::full_like(m0, factor), best_shrink);
    }
    result.max_val.narrow(0, first, rows).copy_(best_m);
    result.shrink.narrow(0, first, rows).copy_(best_shrink);
  }
  return result;
}

void apply_clip(at::Tensor& w, const at::Tensor& max_val, const core::QuantSpec& spec) {
  const Groups groups = groups_of(w.size(1), spec);
  CALQ_ASSERT(
      max_val.dim() == 2 && max_val.size(0) == w.size(0) && max_val.size(1) == groups.count(),
      "awq clip: bounds [{}, {}] for a [{}, {}] weight", max_val.size(0), max_val.size(1),
      w.size(0), w.size(1));
  const at::Tensor bound =
      max_val.index_select(1, column_groups(w.size(1), groups, w.device())).to(w.scalar_type());
  w.copy_(at::minimum(at::maximum(w, -bound), bound));
}

}  // namespace calq::algorithms
