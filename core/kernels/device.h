// Which implementation of a kernel runs: every kernel's dispatch file (gptq.cpp, hessian.cpp,
// fake_quant.cpp) asks kernel_device() once per call, then switches to its `_cpu` or `_cuda`
// function — CTranslate2's src/ops/<op>.cc role (docs/kernels.md §2). The build flag lives in
// device.cpp alone: headers carry none.
#pragma once

#include <string_view>

#include <ATen/core/Tensor.h>

namespace calq::core::kernels {

enum class KernelDevice { Cpu, Cuda };

/// Whether this calq was configured with CALQ_CUDA=ON (the `_cuda.cu` kernels are linked in).
bool built_with_cuda();

/// The device whose implementation of `op` runs on t. Throws calq::Error naming `op` for a CUDA
/// tensor in a CPU-only build ("calq was built without CUDA") and for any other device.
KernelDevice kernel_device(const at::Tensor& t, std::string_view op);

}  // namespace calq::core::kernels
