// The Hessian accumulation of GPTQ's calibration statistics (calib/linear_stats.h): Σ xᵀx over
// batches in float64, then H = 2 Σ xᵀx / N in float32 (IST-DASLab/gptq add_batch, without its
// running rescale). The sum's layout belongs to the implementation that filled it: the CPU one
// keeps upper-triangle row blocks (memory), the CUDA one the whole matrix (one GEMM per batch).
#pragma once

#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>

namespace calq::core::kernels {

/// sum += xᵀx for x [tokens, in] float32 (CPU or CUDA). `sum` starts empty and is filled on the
/// first call; every call must bring x on the same device and with the same `in`.
void accumulate_xtx(std::vector<at::Tensor>& sum, const at::Tensor& x);

/// H = 2 · sum / n_samples, [in, in] float32 on sum's device, exactly symmetric (the upper
/// triangle mirrored). Gives the sum up as it goes (the float64 blocks are freed one by one).
at::Tensor hessian_from_xtx(std::vector<at::Tensor>& sum, int64_t n_samples);

}  // namespace calq::core::kernels
