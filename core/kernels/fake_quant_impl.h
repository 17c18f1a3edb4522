// Internal to the activation fake-quant kernel (fake_quant*.{cpp,cu}): the per-device entry
// points that fake_quant.cpp dispatches to, on arguments it has checked.
#pragma once

#include <ATen/core/Tensor.h>

#include "core/quant/quantizer.h"

namespace calq::core::kernels::fake_quant_detail {

at::Tensor fake_quantize_rows_cpu(const at::Tensor& rows,
                                  const at::Tensor& scale,
                                  const at::Tensor& zero,
                                  const QuantSpec& spec);

/// fake_quant_cuda.cu (CALQ_CUDA=ON only).
at::Tensor fake_quantize_rows_cuda(const at::Tensor& rows,
                                   const at::Tensor& scale,
                                   const at::Tensor& zero,
                                   const QuantSpec& spec);

}  // namespace calq::core::kernels::fake_quant_detail
