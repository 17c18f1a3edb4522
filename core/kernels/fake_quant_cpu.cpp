// The CPU activation fake-quant: core's grid ops as activation_quant.cpp ran them before the
// kernel layer (ATen element-wise ops, vectorized by ATen), so CPU results are unchanged.
#include <ATen/ATen.h>

#include "core/kernels/fake_quant_impl.h"

namespace calq::core::kernels::fake_quant_detail {

at::Tensor fake_quantize_rows_cpu(const at::Tensor& rows,
                                  const at::Tensor& scale,
                                  const at::Tensor& zero,
                                  const QuantSpec& spec) {
  // [tokens] or [1] params → [tokens, 1] / [1, 1] against rows [tokens, in].
  const at::Tensor codes = quantize_codes(rows, scale, zero, spec);
  return dequantize(codes, scale, zero);
}

}  // namespace calq::core::kernels::fake_quant_detail
