// The GPTQ kernel's checks and device dispatch (docs/kernels.md §2): arguments are checked once
// here, then the CPU (gptq_cpu.cpp) or CUDA (gptq_cuda.cu) implementation runs.
#include "core/kernels/gptq.h"

#include <cmath>
#include <utility>

#include <ATen/ATen.h>

#include "core/error.h"
#include "core/kernels/device.h"
#include "core/kernels/gptq_steps.h"
#include "core/shape_text.h"

namespace calq::core::kernels {
namespace gptq_detail {

void check_arguments(const at::Tensor& W,
                     const at::Tensor& H,
                     const core::QuantSpec& spec,
                     const GptqOptions& opts) {
  core::validate(spec);
  CALQ_CHECK(W.defined() && W.dim() == 2 && W.numel() > 0 && at::isFloatingType(W.scalar_type()),
             "gptq: weight {} {}; expected a non-empty 2-d [rows, cols] floating-point tensor",
             W.defined() ? core::shape_text(W.sizes()) : "undefined",
             W.defined() ? c10::toString(W.scalar_type()) : "");
  const int64_t cols = W.size(1);
  CALQ_CHECK(H.defined() && H.dim() == 2 && H.size(0) == cols && H.size(1) == cols &&
                 at::isFloatingType(H.scalar_type()),
             "gptq: Hessian {} for a weight {}; expected a floating-point [{}, {}] tensor",
             H.defined() ? core::shape_text(H.sizes()) : "undefined",
             core::shape_text(W.sizes()), cols, cols);
  CALQ_CHECK(W.device() == H.device(), "gptq: weight on {} but Hessian on {}; expected one device",
             W.device().str(), H.device().str());
  CALQ_CHECK(std::isfinite(opts.damp) && opts.damp >= 0,
             "gptq.damp: {} is not a valid relative damp; expected a finite value >= 0", opts.damp);
  CALQ_CHECK(opts.block_size >= 1, "gptq.block_size: {}; expected a positive number of columns",
             opts.block_size);
  CALQ_CHECK(opts.max_damp_escalations >= 0, "gptq: max_damp_escalations {}; expected a count >= 0",
             opts.max_damp_escalations);
}

}  // namespace gptq_detail

void GptqWorkspace::release() {
  for (at::Tensor& t : buffers)
    t.reset();
}

GptqResult gptq_quantize(const at::Tensor& W,
                         at::Tensor H,
                         const core::QuantSpec& spec,
                         const GptqOptions& opts,
                         bool consume_hessian,
                         GptqWorkspace* workspace) {
  gptq_detail::check_arguments(W, H, spec, opts);
  switch (kernel_device(W, "gptq")) {
    case KernelDevice::Cpu: {
      GptqWorkspace fresh;  // freed on return when the caller keeps none
      return gptq_detail::gptq_quantize_cpu(W, std::move(H), spec, opts, consume_hessian,
                                            workspace != nullptr ? *workspace : fresh);
    }
    case KernelDevice::Cuda:
#if defined(CALQ_WITH_CUDA)
      return gptq_detail::gptq_quantize_cuda(W, H, spec, opts);
#else
      break;  // kernel_device has thrown
#endif
  }
  CALQ_ASSERT(false, "gptq: no implementation for {}", W.device().str());
  return {};
}

}  // namespace calq::core::kernels
