#include "calib/linear_stats.h"

#include <ATen/ATen.h>

#include <algorithm>

#include "core/dist/communicator.h"
#include "core/error.h"
#include "core/kernels/hessian.h"
#include "core/numeric_guard.h"

namespace calq::calib {

void StatRequest::merge(const StatRequest& other) {
  hessian = hessian || other.hessian;
  absmax = absmax || other.absmax;
  mean_abs = mean_abs || other.mean_abs;
  inputs = inputs || other.inputs;
}

void LinearStatsAccumulator::add(const at::Tensor& x) {
  CALQ_ASSERT(x.dim() == 2 || x.dim() == 3, "linear input must be 2-D or 3-D, got {}-D", x.dim());
  const int64_t batch = x.dim() == 3 ? x.size(0) : 1;
  const at::Tensor flat = x.reshape({-1, x.size(-1)});
  n_samples_ += batch;
  n_tokens_ += flat.size(0);
  // One reduction per batch, O(tokens·in) beside the O(tokens·in²) Hessian GEMM.
  non_finite_ += core::count_non_finite(x);
  if (request_.hessian) {
    // CPU or CUDA, as x (core/kernels/hessian.h; the layout of the sum is the kernel's).
    core::kernels::accumulate_xtx(xtx_blocks_, flat.to(at::kFloat));
  }
  if (request_.absmax || request_.mean_abs) {
    const at::Tensor a = flat.abs().to(at::kFloat);
    if (request_.absmax) {
      const at::Tensor m = std::get<0>(a.max(0));
      absmax_ = absmax_.defined() ? at::maximum(absmax_, m) : m;
    }
    if (request_.mean_abs) {
      const at::Tensor s = a.to(at::kDouble).sum(0);
      if (abs_sum_.defined()) {
        abs_sum_.add_(s);
      } else {
        abs_sum_ = s;
      }
    }
  }
  if (request_.inputs) inputs_.push_back(flat.clone());
}

void require_finite(const LinearStats& stats, int64_t layer, const std::string& linear) {
  const core::GuardSite site{layer, linear, "calibration statistics"};
  if (stats.non_finite_inputs > 0) {
    fail("layer {} {}: calibration inputs have {} non-finite (NaN/Inf) entries in {} tokens "
         "(stage: {}); expected finite activations; the embeddings, a norm or an earlier layer "
         "holds NaN/Inf, or the forward overflowed the compute dtype",
         layer, linear, stats.non_finite_inputs, stats.n_tokens, site.stage);
  }
  core::require_finite(stats.hessian, site, "Hessian",
                       "the inputs were finite, so 2XᵀX/N overflowed float32");
}

void rescale_inputs(LinearStats& stats, const at::Tensor& s) {
  const at::Tensor s32 = s.to(at::kFloat).reshape({-1});
  if (stats.hessian.defined()) {
    CALQ_ASSERT(stats.hessian.size(0) == s32.numel(), "scale of {} channels for a {}-channel "
                "Hessian", s32.numel(), stats.hessian.size(0));
    const at::Tensor inv = (1.0 / s32.to(at::kDouble));
    stats.hessian = (stats.hessian.to(at::kDouble) * inv.unsqueeze(1) * inv.unsqueeze(0))
                        .to(at::kFloat);
  }
  if (stats.absmax.defined()) stats.absmax = stats.absmax / s32;
  if (stats.mean_abs.defined()) stats.mean_abs = stats.mean_abs / s32;
  if (stats.inputs.defined()) stats.inputs = stats.inputs / s32.to(stats.inputs.scalar_type());
}

LinearStats LinearStatsAccumulator::finish() {
  LinearStats stats;
  stats.n_samples = n_samples_;
  stats.n_tokens = n_tokens_;
  stats.non_finite_inputs = non_finite_;
  if (n_samples_ == 0) return stats;
  if (request_.hessian) stats.hessian = core::kernels::hessian_from_xtx(xtx_blocks_, n_samples_);
  if (request_.absmax) stats.absmax = absmax_;
  if (request_.mean_abs) {
    stats.mean_abs = (abs_sum_ / static_cast<double>(n_tokens_)).to(at::kFloat);
  }
  if (request_.inputs) stats.inputs = at::cat(inputs_, 0);
  return stats;
}

}  // namespace calq::calib

namespace calq::calib {

void LinearStatsAccumulator::reduce_across_ranks(int64_t in, at::ScalarType inputs_dtype,
                                                 const std::string& step) {
  dist::Communicator& ranks = dist::Communicator::world();
  if (!ranks.distributed()) return;
  at::Tensor counts = at::tensor({n_samples_, n_tokens_, non_finite_}, at::kLong);
  ranks.sum_in_rank_order(counts, step + ": counts");
  n_samples_ = counts[0].item<int64_t>();
  n_tokens_ = counts[1].item<int64_t>();
  non_finite_ = counts[2].item<int64_t>();
  if (request_.hessian) {
    // A rank without tokens contributes zero blocks in the kernel's layout.
    if (xtx_blocks_.empty()) core::kernels::accumulate_xtx(xtx_blocks_, at::zeros({0, in}));
    for (at::Tensor& block : xtx_blocks_) ranks.sum_in_rank_order(block, step + ": Hessian");
  }
  if (request_.absmax) {
    if (!absmax_.defined()) absmax_ = at::zeros({in});  // |x| >= 0: zero changes no maximum
    ranks.max(absmax_, step + ": absmax");
  }
  if (request_.mean_abs) {
    if (!abs_sum_.defined()) abs_sum_ = at::zeros({in}, at::kDouble);
    ranks.sum_in_rank_order(abs_sum_, step + ": sum |x|");
  }
  if (request_.inputs) {
    at::Tensor local = inputs_.empty() ? at::empty({0, in}, inputs_dtype) : at::cat(inputs_, 0);
    inputs_.clear();
    inputs_.push_back(ranks.gather_rows(local, step + ": inputs"));
  }
}

}  // namespace calq::calib
