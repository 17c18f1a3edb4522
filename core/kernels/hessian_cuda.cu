// The CUDA Hessian accumulation. GPU memory is not the CPU's constraint, so the float64 sum is
// the whole [in, in] matrix (one element of `sum`), and each batch costs one float32 cuBLAS GEMM
// (at::mm on the current stream; TF32 stays off unless the process allows it) plus one add into
// the double sum — instead of in/256 row-block GEMMs (hessian_cpu.cpp). The final scale, rounding
// to float32 and mirroring of the upper triangle is one fused kernel: as on the CPU, H is exactly
// symmetric and each element is rounded once, from double.
#include <cstdint>

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>

#include "core/kernels/hessian_impl.h"

namespace calq::core::kernels::hessian_detail {
namespace {

constexpr int kTile = 32;

// h[i][j] = float(scale · sum[min(i,j)][max(i,j)]): the upper triangle, read for both halves.
__global__ void scale_mirror_kernel(const double* __restrict__ sum,
                                    int64_t in,
                                    double scale,
                                    float* __restrict__ h) {
  const int64_t i = int64_t(blockIdx.y) * kTile + threadIdx.y;
  const int64_t j = int64_t(blockIdx.x) * kTile + threadIdx.x;
  if (i >= in || j >= in)
    return;
  const int64_t lo = i < j ? i : j;
  const int64_t hi = i < j ? j : i;
  h[i * in + j] = static_cast<float>(scale * sum[lo * in + hi]);
}

}  // namespace

void accumulate_xtx_cuda(std::vector<at::Tensor>& sum, const at::Tensor& x) {
  const at::Tensor product = at::mm(x.t(), x);  // [in, in] float32, cuBLAS
  if (sum.empty()) {
    sum.push_back(product.to(at::kDouble));
  } else {
    sum.front().add_(product);
  }
}

at::Tensor hessian_from_xtx_cuda(std::vector<at::Tensor>& sum, int64_t n_samples) {
  const at::Tensor s = sum.front().contiguous();
  const int64_t in = s.size(0);
  at::Tensor h = at::empty({in, in}, s.options().dtype(at::kFloat));
  const dim3 threads(kTile, kTile);
  const dim3 blocks(static_cast<unsigned>((in + kTile - 1) / kTile),
                    static_cast<unsigned>((in + kTile - 1) / kTile));
  scale_mirror_kernel<<<blocks, threads, 0, at::cuda::getCurrentCUDAStream()>>>(
      s.data_ptr<double>(), in, 2.0 / static_cast<double>(n_samples), h.data_ptr<float>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  sum.clear();
  return h;
}

}  // namespace calq::core::kernels::hessian_detail
