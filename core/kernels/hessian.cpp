// Checks and device dispatch of the Hessian accumulation (docs/kernels.md §2).
#include "core/kernels/hessian.h"

#include <ATen/ATen.h>

#include "core/error.h"
#include "core/kernels/device.h"
#include "core/kernels/hessian_impl.h"
#include "core/shape_text.h"

namespace calq::core::kernels {

void accumulate_xtx(std::vector<at::Tensor>& sum, const at::Tensor& x) {
  CALQ_CHECK(x.dim() == 2 && x.scalar_type() == at::kFloat,
             "hessian: input {} {}; expected a 2-d [tokens, in] float32 tensor",
             core::shape_text(x.sizes()), c10::toString(x.scalar_type()));
  if (!sum.empty()) {
    CALQ_CHECK(sum.front().device() == x.device() && sum.front().size(1) == x.size(1),
               "hessian: a batch [{}, {}] on {} after batches of {} channels on {}; expected "
               "one device and one width",
               x.size(0), x.size(1), x.device().str(), sum.front().size(1),
               sum.front().device().str());
  }
  switch (kernel_device(x, "hessian")) {
    case KernelDevice::Cpu:
      return hessian_detail::accumulate_xtx_cpu(sum, x);
    case KernelDevice::Cuda:
#if defined(CALQ_WITH_CUDA)
      return hessian_detail::accumulate_xtx_cuda(sum, x);
#else
      break;  // kernel_device has thrown
#endif
  }
  CALQ_ASSERT(false, "hessian: no implementation for {}", x.device().str());
}

at::Tensor hessian_from_xtx(std::vector<at::Tensor>& sum, int64_t n_samples) {
  CALQ_ASSERT(!sum.empty() && n_samples > 0, "hessian of {} blocks over {} samples", sum.size(),
              n_samples);
  switch (kernel_device(sum.front(), "hessian")) {
    case KernelDevice::Cpu:
      return hessian_detail::hessian_from_xtx_cpu(sum, n_samples);
    case KernelDevice::Cuda:
#if defined(CALQ_WITH_CUDA)
      return hessian_detail::hessian_from_xtx_cuda(sum, n_samples);
#else
      break;  // kernel_device has thrown
#endif
  }
  CALQ_ASSERT(false, "hessian: no implementation for {}", sum.front().device().str());
  return {};
}

}  // namespace calq::core::kernels
