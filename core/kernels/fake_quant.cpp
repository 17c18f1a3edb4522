// Checks and device dispatch of the activation fake-quant kernel (docs/kernels.md §2).
#include "core/kernels/fake_quant.h"

#include <ATen/ATen.h>

#include "core/error.h"
#include "core/kernels/device.h"
#include "core/kernels/fake_quant_impl.h"
#include "core/shape_text.h"

namespace calq::core::kernels {

at::Tensor fake_quantize_rows(const at::Tensor& rows,
                              const at::Tensor& scale,
                              const at::Tensor& zero,
                              const QuantSpec& spec) {
  validate(spec);
  CALQ_CHECK(rows.dim() == 2 && rows.scalar_type() == at::kFloat,
             "fake quant: activations {} {}; expected a 2-d [tokens, in] float32 tensor",
             core::shape_text(rows.sizes()), c10::toString(rows.scalar_type()));
  const int64_t n = scale.numel();
  CALQ_CHECK((n == 1 || n == rows.size(0)) && zero.numel() == n &&
                 scale.scalar_type() == at::kFloat && zero.scalar_type() == at::kInt,
             "fake quant: {} float32 scales and {} int32 zero points for {} rows; expected one "
             "of each per row, or one for all",
             scale.numel(), zero.numel(), rows.size(0));
  CALQ_CHECK(scale.device() == rows.device() && zero.device() == rows.device(),
             "fake quant: activations on {}, scale on {}, zero on {}; expected one device",
             rows.device().str(), scale.device().str(), zero.device().str());
  switch (kernel_device(rows, "fake quant")) {
    case KernelDevice::Cpu:
      return fake_quant_detail::fake_quantize_rows_cpu(rows, scale, zero, spec);
    case KernelDevice::Cuda:
#if defined(CALQ_WITH_CUDA)
      return fake_quant_detail::fake_quantize_rows_cuda(rows, scale, zero, spec);
#else
      break;  // kernel_device has thrown
#endif
  }
  CALQ_ASSERT(false, "fake quant: no implementation for {}", rows.device().str());
  return {};
}

}  // namespace calq::core::kernels
