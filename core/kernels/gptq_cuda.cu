// The CUDA implementation of GPTQ (docs/algorithms.md §3.1 steps 5–8). Steps 1–4 and 9–10 are
// gptq_steps.cpp's, on the GPU through ATen. GPTQ never mixes rows — a row's errors feed only that
// row — so the in-block column loop (step 7), which the device-generic implementation runs as ~10
// ATen ops per column, is one kernel launch per block segment here with one thread per row of W:
// it quantizes the segment's columns in order and applies the eager in-block update to the rest
// of the block. The lazy batch update between blocks is one cuBLAS GEMM (at::addmm_ on the
// current stream). Steps 5–6 (the inverse factor) take the reference's cuSOLVER route
// (inverse_factor_aten). Built with -fmad=false: the column arithmetic rounds like the CPU kernel
// (gptq_cpu.cpp quantize_column), so codes differ from the CPU's only where the GEMMs' float
// reductions do (tests/cuda/cuda_parity_test.cpp).
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>

#include "core/kernels/gptq_steps.h"

namespace calq::core::kernels::gptq_detail {
namespace {

constexpr int kThreads = 128;

__device__ __forceinline__ float clamp_code(float v, float lo, float hi) {
  v = v > lo ? v : lo;  // as gptq_cpu.cpp: a NaN becomes lo
  return v < hi ? v : hi;
}

// Columns [ta, tb) of the block [i1, i1 + nb), one thread per row r of W. Layouts as the CPU
// kernel's: wt/w1/e1/codes/deq are [column][rows] (a column of W is a contiguous row, so the
// threads of a warp touch consecutive floats), u is U [cols, cols] row-major, scales/zeros are
// [n_groups][rows]. Per column k = i1 + t: q = Q(w; s, z), e = (w − q)/d with d = U[k][k], the
// reference's loss (w − q)²/d² into loss[r] (double), then W1[t'] −= e · U[k][i1 + t'] for t' > t.
template <bool kCtOrder>
__global__ void gptq_block_kernel(float* __restrict__ w1,
                                  float* __restrict__ e1,
                                  const float* __restrict__ u,
                                  const float* __restrict__ scales,
                                  const float* __restrict__ zeros,
                                  const int64_t* __restrict__ pos_group,
                                  int32_t* __restrict__ codes,
                                  float* __restrict__ deq,
                                  double* __restrict__ loss,
                                  int64_t rows,
                                  int64_t cols,
                                  int64_t i1,
                                  int64_t nb,
                                  int64_t ta,
                                  int64_t tb,
                                  float qmin,
                                  float qmax) {
  const int64_t r = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r >= rows)
    return;
  double row_loss = 0;
  for (int64_t t = ta; t < tb; ++t) {
    const int64_t k = i1 + t;
    const float* u_row = u + k * cols;
    const float d = u_row[k];
    const int64_t p = pos_group[k] * rows + r;
    const float s = scales[p];
    const float z = zeros[p];
    const float w = w1[t * rows + r];
    const float x = w / s;
    const float v = kCtOrder ? rintf(clamp_code(x + z, qmin, qmax))
                             : clamp_code(rintf(x) + z, qmin, qmax);
    const float q = s * (v - z);
    const float err = w - q;
    const float e = err / d;
    codes[k * rows + r] = static_cast<int32_t>(v);
    deq[k * rows + r] = q;
    e1[t * rows + r] = e;
    row_loss += double((err * err) / (d * d));
    for (int64_t t2 = t + 1; t2 < nb; ++t2)
      w1[t2 * rows + r] -= e * u_row[i1 + t2];
  }
  loss[r] += row_loss;
}

}  // namespace

GptqResult gptq_quantize_cuda(const at::Tensor& W_in,
                              const at::Tensor& H_in,
                              const core::QuantSpec& spec,
                              const GptqOptions& opts) {
  const auto start = std::chrono::steady_clock::now();
  GptqWorkspace workspace;  // scratch on CUDA is plain at::empty (gptq_steps.cpp scratch)
  GptqSetup setup = prepare(W_in, H_in, spec, opts, false, workspace);
  const int64_t rows = setup.Wt.size(1);
  const int64_t cols = setup.Wt.size(0);
  const int64_t g = setup.group_size;
  const at::TensorOptions f32 = setup.Wt.options().dtype(at::kFloat);
  GptqResult result;

  // Steps 5–6, escalating damp on failure (§3.4).
  at::Tensor U;
  factor_with_escalating_damp(cols, opts, result,
                              [&](double damp) { return inverse_factor_aten(setup.H, damp, U); });
  U = U.contiguous();
  setup.H = at::Tensor();

  // Step 7. Outer W = setup.Wt [cols, rows] (lazily updated in place), the block's W1 and E1
  // [B, rows]; codes/deq [cols, rows] in processing order, transposed at the end.
  const int64_t B = std::min(opts.block_size, cols);
  at::Tensor& Wt = setup.Wt;
  at::Tensor w1 = at::empty({B, rows}, f32);
  at::Tensor e1 = at::empty({B, rows}, f32);
  at::Tensor codes_t = at::empty({cols, rows}, f32.dtype(at::kInt));
  at::Tensor deq_t = at::empty({cols, rows}, f32);
  at::Tensor loss = at::zeros({rows}, f32.dtype(at::kDouble));
  at::Tensor scales = setup.dynamic_groups ? at::empty({setup.n_groups, rows}, f32)
                                           : setup.fixed_scales.contiguous();
  at::Tensor zeros = setup.dynamic_groups ? at::empty({setup.n_groups, rows}, f32.dtype(at::kInt))
                                          : setup.fixed_zeros.contiguous();
  at::Tensor zeros_f = zeros.to(at::kFloat);  // the zero as the float the arithmetic uses
  const at::Tensor pos_group = setup.pos_group.to(Wt.device());
  const CodeRange range = code_range(spec.grid, spec.bits);
  const bool ct_order = spec.grid == Grid::CtSym || spec.grid == Grid::CtAsym;
  auto* kernel = ct_order ? gptq_block_kernel<true> : gptq_block_kernel<false>;
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const unsigned n_blocks = static_cast<unsigned>((rows + kThreads - 1) / kThreads);

  // Dynamic group params at position k = i1 + t (§3.1 step 7), from columns [k, k + g) of the
  // outer W (the reference: stale in-block) or of the fully updated W (§3.5-a), as gptq_cpu.cpp.
  auto fit_group = [&](int64_t i1, int64_t t, int64_t nb) {
    const int64_t k = i1 + t;
    const int64_t len = std::min(g, cols - k);
    at::Tensor src = Wt.narrow(0, k, len);  // [len, rows]
    if (opts.fit_on_updated_block) {
      const int64_t in_block = std::min(len, nb - t);
      src = w1.narrow(0, t, in_block);
      if (len > in_block) {  // past the block: outer W minus this block's pending update
        at::Tensor tail = Wt.narrow(0, i1 + nb, len - in_block).clone();
        if (t > 0) {
          tail.addmm_(U.narrow(0, i1, t).narrow(1, i1 + nb, len - in_block).t(),
                      e1.narrow(0, 0, t), 1.0, -1.0);
        }
        src = at::cat({src, tail}, 0);
      }
    }
    const QuantParams p = fit_params(src.t(), spec);  // one (s, z) per row of W
    scales[k / g].copy_(p.scale);
    zeros[k / g].copy_(p.zero);
    zeros_f[k / g].copy_(p.zero);
  };

  for (int64_t i1 = 0; i1 < cols; i1 += B) {
    const int64_t i2 = std::min(i1 + B, cols);
    const int64_t nb = i2 - i1;
    w1.narrow(0, 0, nb).copy_(Wt.narrow(0, i1, nb));
    for (int64_t ta = 0; ta < nb;) {
      int64_t tb = nb;
      if (setup.dynamic_groups) {  // segments end where the next group starts
        const int64_t k = i1 + ta;
        if (k % g == 0)
          fit_group(i1, ta, nb);
        tb = std::min(nb, (k / g + 1) * g - i1);
      }
      kernel<<<n_blocks, kThreads, 0, stream>>>(
          w1.data_ptr<float>(), e1.data_ptr<float>(), U.data_ptr<float>(),
          scales.data_ptr<float>(), zeros_f.data_ptr<float>(), pos_group.data_ptr<int64_t>(),
          codes_t.data_ptr<int32_t>(), deq_t.data_ptr<float>(), loss.data_ptr<double>(), rows,
          cols, i1, nb, ta, tb, static_cast<float>(range.qmin), static_cast<float>(range.qmax));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      ta = tb;
    }
    if (i2 < cols) {  // lazy batch update: W[:, i2:] −= E1 · U[i1:i2, i2:] (here transposed)
      Wt.narrow(0, i2, cols - i2)
          .addmm_(U.narrow(0, i1, nb).narrow(1, i2, cols - i2).t(), e1.narrow(0, 0, nb), 1.0,
                  -1.0);
    }
  }
  const double total = loss.sum().item<double>();
  check_error_feedback_finite(total, result.damp_used, cols);
  result.reference_loss = total / 2;

  at::Tensor codes = codes_t.t();
  at::Tensor deq = deq_t.t();
  if (setup.perm.defined()) {  // step 8: Q[:, invperm]
    const at::Tensor invperm = at::argsort(setup.perm).to(Wt.device());
    codes = codes.index_select(1, invperm);
    deq = deq.index_select(1, invperm);
  }
  assemble(setup, spec, codes, deq, scales, zeros, result);
  const auto proxy_start = std::chrono::steady_clock::now();
  const at::Tensor dW = W_in.to(at::kFloat) - result.dequantized;
  result.proxy_loss =
      (dW.matmul(H_in.to(at::kFloat)) * dW).sum(at::kDouble).item<double>() / double(rows);
  const auto end = std::chrono::steady_clock::now();
  result.proxy_seconds = std::chrono::duration<double>(end - proxy_start).count();
  result.seconds = std::chrono::duration<double>(end - start).count();
  return result;
}

}  // namespace calq::core::kernels::gptq_detail
