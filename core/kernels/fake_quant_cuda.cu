// The CUDA activation fake-quant: one fused element-wise kernel for what the CPU runs as six ATen
// ops (divide, round, add, clamp, subtract, multiply; fake_quant_cpu.cpp) — activations are
// re-quantized at every forward, and each ATen op is a full read and write of them. Built with
// -fmad=false (core/CMakeLists.txt): s · (q − z) is rounded as a product of a rounded difference,
// so results equal the CPU's bit for bit. Follows ATen's launch conventions (current stream,
// C10_CUDA_KERNEL_LAUNCH_CHECK; aten/src/ATen/native/cuda/), not its code.
#include <cstdint>

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>

#include "core/kernels/fake_quant_impl.h"

namespace calq::core::kernels::fake_quant_detail {
namespace {

constexpr int kThreads = 256;

// core/quant/quantizer.cpp codes_f32 op for op: x / s true division (IEEE in nvcc's default
// -prec-div=true), rintf = round half to even as at::round; ct grids clamp before rounding.
// at::clamp keeps a NaN, and so does this clamp.
__device__ __forceinline__ float clamp_code(float v, float lo, float hi) {
  return v < lo ? lo : (v > hi ? hi : v);
}

template <bool kCtOrder>
__global__ void fake_quant_rows_kernel(const float* __restrict__ x,
                                       const float* __restrict__ scale,
                                       const int32_t* __restrict__ zero,
                                       int64_t n,
                                       int64_t in,
                                       bool per_row,
                                       float qmin,
                                       float qmax,
                                       float* __restrict__ out) {
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const int64_t p = per_row ? i / in : 0;
    const float s = scale[p];
    const float z = static_cast<float>(zero[p]);
    const float scaled = x[i] / s;
    const float q = kCtOrder ? rintf(clamp_code(scaled + z, qmin, qmax))
                             : clamp_code(rintf(scaled) + z, qmin, qmax);
    out[i] = s * (q - z);  // core::dequantize: scale * (float(code) - zero)
  }
}

}  // namespace

at::Tensor fake_quantize_rows_cuda(const at::Tensor& rows_in,
                                   const at::Tensor& scale_in,
                                   const at::Tensor& zero_in,
                                   const QuantSpec& spec) {
  const at::Tensor rows = rows_in.contiguous();
  const at::Tensor scale = scale_in.contiguous();
  const at::Tensor zero = zero_in.contiguous();
  at::Tensor out = at::empty_like(rows);
  const int64_t n = rows.numel();
  if (n == 0)
    return out;
  const CodeRange range = code_range(spec.grid, spec.bits);
  const bool per_row = scale.numel() != 1;
  const bool ct_order = spec.grid == Grid::CtSym || spec.grid == Grid::CtAsym;
  const int64_t wanted = (n + kThreads - 1) / kThreads;
  const int blocks = static_cast<int>(wanted < 65535 * 8 ? wanted : 65535 * 8);  // grid-stride
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  auto* launch = ct_order ? fake_quant_rows_kernel<true> : fake_quant_rows_kernel<false>;
  launch<<<blocks, kThreads, 0, stream>>>(rows.data_ptr<float>(), scale.data_ptr<float>(),
                                          zero.data_ptr<int32_t>(), n, rows.size(1), per_row,
                                          static_cast<float>(range.qmin),
                                          static_cast<float>(range.qmax), out.data_ptr<float>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace calq::core::kernels::fake_quant_detail
