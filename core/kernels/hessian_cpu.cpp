// The CPU Hessian accumulation (moved from calib/linear_stats.cpp, unchanged in its arithmetic).
// Σ xᵀx is kept in float64 as the upper triangle in row blocks: block b holds rows
// [b·R, b·R + R) from column b·R on — half the bytes of the full double matrix (a 7B down_proj:
// 0.46 GB, not 0.92) — and each batch's float product is formed one block at a time (R × in
// floats) instead of as a whole in × in matrix.
#include <algorithm>

#include <ATen/ATen.h>

#include "core/kernels/hessian_impl.h"
#include "core/model/allocation_policy.h"

namespace calq::core::kernels::hessian_detail {
namespace {

/// Rows per Hessian block: a block's float product is kHessianBlockRows × in.
constexpr int64_t kHessianBlockRows = 256;

}  // namespace

void accumulate_xtx_cpu(std::vector<at::Tensor>& sum, const at::Tensor& f) {
  const int64_t in = f.size(1);
  const bool first = sum.empty();
  for (int64_t b = 0, begin = 0; begin < in; ++b, begin += kHessianBlockRows) {
    const int64_t rows = std::min(kHessianBlockRows, in - begin);
    // The same float dot products as the full f.t() @ f (each element sums over the tokens
    // in the same order), added into the double sum as is: ATen casts element-wise.
    const at::Tensor product =
        at::matmul(f.narrow(1, begin, rows).t(), f.narrow(1, begin, in - begin));
    if (first) {
      sum.push_back(product.to(at::kDouble));
    } else {
      sum[static_cast<size_t>(b)].add_(product);
    }
  }
}

at::Tensor hessian_from_xtx_cpu(std::vector<at::Tensor>& sum, int64_t n_samples) {
  // Scaled in double and rounded once to float, block by block; each double block is freed
  // once converted, and the lower triangle is the mirror of the upper (H is symmetric exactly).
  const int64_t in = sum.front().size(1);
  at::Tensor hessian = at::empty({in, in}, sum.front().options().dtype(at::kFloat));
  const at::Tensor scale =
      at::scalar_tensor(2.0 / static_cast<double>(n_samples), sum.front().options());
  int64_t begin = 0;
  for (at::Tensor& block : sum) {
    const int64_t rows = block.size(0);
    at::Tensor upper = hessian.narrow(0, begin, rows).narrow(1, begin, in - begin);
    at::mul_out(upper, block, scale);
    // Blocks are below the mmap threshold: freed, they stay in the heap unless handed back,
    // and the float H's pages would come on top of them (a 7B down_proj: +0.46 GB).
    block = at::Tensor();
    if (sum.size() > 1) core::give_back_free_heap_pages();
    at::Tensor diagonal = upper.narrow(1, 0, rows);
    diagonal.copy_(diagonal.triu() + diagonal.triu(1).t());
    if (in - begin > rows) {
      hessian.narrow(1, begin, rows).narrow(0, begin + rows, in - begin - rows)
          .copy_(upper.narrow(1, rows, in - begin - rows).t());
    }
    begin += rows;
  }
  sum.clear();
  return hessian;
}

}  // namespace calq::core::kernels::hessian_detail
