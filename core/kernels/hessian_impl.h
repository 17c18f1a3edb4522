// Internal to the Hessian kernel (hessian*.{cpp,cu}): the per-device entry points that
// hessian.cpp dispatches to, on arguments it has checked.
#pragma once

#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>

namespace calq::core::kernels::hessian_detail {

void accumulate_xtx_cpu(std::vector<at::Tensor>& sum, const at::Tensor& x);
at::Tensor hessian_from_xtx_cpu(std::vector<at::Tensor>& sum, int64_t n_samples);

/// hessian_cuda.cu (CALQ_CUDA=ON only).
void accumulate_xtx_cuda(std::vector<at::Tensor>& sum, const at::Tensor& x);
at::Tensor hessian_from_xtx_cuda(std::vector<at::Tensor>& sum, int64_t n_samples);

}  // namespace calq::core::kernels::hessian_detail
