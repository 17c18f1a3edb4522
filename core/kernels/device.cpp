// The one place that knows whether the CUDA kernels were built (CALQ_WITH_CUDA, set on calq_core
// by CMake when CALQ_CUDA=ON; docs/kernels.md §3).
#include "core/kernels/device.h"

#include <string>

#include "core/error.h"

namespace calq::core::kernels {

bool built_with_cuda() {
#if defined(CALQ_WITH_CUDA)
  return true;
#else
  return false;
#endif
}

KernelDevice kernel_device(const at::Tensor& t, std::string_view op) {
  const c10::DeviceType type = t.device().type();
  if (type == c10::DeviceType::CPU)
    return KernelDevice::Cpu;
  if (type == c10::DeviceType::CUDA) {
    CALQ_CHECK(built_with_cuda(),
               "{}: got a tensor on {}, but calq was built without CUDA; expected CPU tensors, or a "
               "build configured with -DCALQ_CUDA=ON (scripts/build_cuda.sh)",
               op, t.device().str());
    return KernelDevice::Cuda;
  }
  fail("{}: no kernel for tensors on {}; expected cpu or cuda", op, t.device().str());
}

}  // namespace calq::core::kernels
