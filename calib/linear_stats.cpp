#include "calib/linear_stats.h"

#include <ATen/ATen.h>

#include <algorithm>

#include "core/error.h"
#include "core/model/allocation_policy.h"
#include "core/numeric_guard.h"

namespace calq::calib {
namespace {

/// Rows per Hessian block: a block's float product is kHessianBlockRows × in.
constexpr int64_t kHessianBlockRows = 256;

}  // namespace

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
    const at::Tensor f = flat.to(at::kFloat);
    const int64_t in = f.size(1);
    const bool first = xtx_blocks_.empty();
    for (int64_t b = 0, begin = 0; begin < in; ++b, begin += kHessianBlockRows) {
      const int64_t rows = std::min(kHessianBlockRows, in - begin);
      // The same float dot products as the full f.t() @ f (each element sums over the tokens
      // in the same order), added into the double sum as is: ATen casts element-wise.
      const at::Tensor product =
          at::matmul(f.narrow(1, begin, rows).t(), f.narrow(1, begin, in - begin));
      if (first) {
        xtx_blocks_.push_back(product.to(at::kDouble));
      } else {
        xtx_blocks_[static_cast<size_t>(b)].add_(product);
      }
    }
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
  if (request_.hessian) {
    // Scaled in double and rounded once to float, block by block; each double block is freed
    // once converted, and the lower triangle is the mirror of the upper (H is symmetric exactly).
    const int64_t in = xtx_blocks_.front().size(1);
    stats.hessian = at::empty({in, in}, xtx_blocks_.front().options().dtype(at::kFloat));
    const at::Tensor scale = at::scalar_tensor(2.0 / static_cast<double>(n_samples_),
                                               xtx_blocks_.front().options());
    int64_t begin = 0;
    for (at::Tensor& block : xtx_blocks_) {
      const int64_t rows = block.size(0);
      at::Tensor upper = stats.hessian.narrow(0, begin, rows).narrow(1, begin, in - begin);
      at::mul_out(upper, block, scale);
      // Blocks are below the mmap threshold: freed, they stay in the heap unless handed back,
      // and the float H's pages would come on top of them (a 7B down_proj: +0.46 GB).
      block = at::Tensor();
      if (xtx_blocks_.size() > 1) core::give_back_free_heap_pages();
      at::Tensor diagonal = upper.narrow(1, 0, rows);
      diagonal.copy_(diagonal.triu() + diagonal.triu(1).t());
      if (in - begin > rows) {
        stats.hessian.narrow(1, begin, rows).narrow(0, begin + rows, in - begin - rows)
            .copy_(upper.narrow(1, rows, in - begin - rows).t());
      }
      begin += rows;
    }
    xtx_blocks_.clear();
  }
  if (request_.absmax) stats.absmax = absmax_;
  if (request_.mean_abs) {
    stats.mean_abs = (abs_sum_ / static_cast<double>(n_tokens_)).to(at::kFloat);
  }
  if (request_.inputs) stats.inputs = at::cat(inputs_, 0);
  return stats;
}

}  // namespace calq::calib
