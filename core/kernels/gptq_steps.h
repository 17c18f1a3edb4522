// Internal to the GPTQ kernel (core/kernels/gptq*.{cpp,cu}; docs/kernels.md): the steps of
// docs/algorithms.md §3.1 that every implementation shares — argument checks and steps 1–4 before
// the column loop, damp escalation (§3.4), and steps 8–10 after it — so the CPU, CUDA and
// device-generic loops differ only in how they run steps 5–7. Declares the per-device entry points
// that gptq.cpp dispatches to.
#pragma once

#include <cstdint>
#include <string>

#include <ATen/core/Tensor.h>

#include "core/kernels/gptq.h"

namespace calq::core::kernels::gptq_detail {

/// Shapes, dtypes, devices and options (calq::Error naming what is wrong); gptq.cpp.
void check_arguments(const at::Tensor& W,
                     const at::Tensor& H,
                     const core::QuantSpec& spec,
                     const GptqOptions& opts);

struct GptqSetup {
  /// [cols, rows] float32, contiguous: Wᵀ, so that a column of W is a row here (the CPU loop's
  /// layout; the generic loop works on the view Wt.t()). Dead columns zeroed (step 2), rows in
  /// processing order (step 4). The implementations update it in place.
  at::Tensor Wt;
  at::Tensor H;     ///< [cols, cols] float32, dead diagonal set to 1, processing order, undamped
  at::Tensor perm;  ///< [cols] int64 (CPU): original column of each processing position
  /// [n_groups, rows] float32 / int32 params known before the loop: the per-channel params of
  /// step 1 (n_groups = 1) or the static groups of step 3; undefined for dynamic groups.
  at::Tensor fixed_scales;
  at::Tensor fixed_zeros;
  at::Tensor g_idx;      ///< [cols] int32 (CPU), step 9
  at::Tensor pos_group;  ///< [cols] int64 (CPU): group of each processing position, g_idx[perm[k]]
  int64_t group_size = -1;  ///< g, or −1 for per-channel / per-tensor
  int64_t n_groups = 1;
  bool dynamic_groups = false;  ///< g ≠ −1 and not static: params fitted in the loop at k % g == 0
  int64_t dead_columns = 0;
  double mean_diag = 0;  ///< mean(diag(H)) after step 2, the base of step 5's λ
};

/// §3.1 steps 1–4, plus g_idx, on arguments check_arguments accepted.
GptqSetup prepare(const at::Tensor& W,
                  const at::Tensor& H,
                  const core::QuantSpec& spec,
                  const GptqOptions& opts,
                  bool consume_hessian,
                  GptqWorkspace& workspace);

/// Throws when the error feedback's summed loss is not finite (both kernels' loops end with it).
void check_error_feedback_finite(double loss, double damp, int64_t cols);

/// §3.4 escalation: damp · 10, or 0.01 when damp is 0.
double next_damp(double damp);

/// Throws the calq::Error for a factorization that failed at every damp tried.
[[noreturn]] void fail_factorization(int64_t cols,
                                     const GptqOptions& opts,
                                     double last_damp,
                                     const std::string& what);

/// Steps 5–6 with §3.4's retry, shared by every kernel: calls factor(damp) — "" on success, else
/// what failed — from opts.damp up, next_damp after each failure, at most
/// opts.max_damp_escalations times; records result.damp_escalations and result.damp_used.
template <class Factor>
void factor_with_escalating_damp(int64_t cols, const GptqOptions& opts, GptqResult& result,
                                 Factor&& factor) {
  double damp = opts.damp;
  for (int attempt = 0;; ++attempt) {
    const std::string what = factor(damp);
    if (what.empty()) {
      result.damp_escalations = attempt;
      break;
    }
    if (attempt == opts.max_damp_escalations) fail_factorization(cols, opts, damp, what);
    damp = next_damp(damp);
  }
  result.damp_used = damp;
}

/// Steps 9–10 and the result's bookkeeping: fills result.q (codes and dequantized [rows, cols],
/// already back in the original column order — step 8 is the caller's), dead_columns and perm.
/// scales/zeros [n_groups, rows] float32 / int32 in group-index order.
void assemble(const GptqSetup& setup,
              const core::QuantSpec& spec,
              const at::Tensor& codes,
              const at::Tensor& dequantized,
              const at::Tensor& scales,
              const at::Tensor& zeros,
              GptqResult& result);

/// at::empty for the kernel's large buffers. On the CPU, buffers of 8 MiB and more are 2 MiB
/// aligned and madvise'd for transparent huge pages: a fresh 64 MiB tensor otherwise costs 16k
/// page faults, which in a VM took a quarter of a 4096² GPTQ run.
at::Tensor empty_buffer(at::IntArrayRef sizes, at::ScalarType dtype, at::Device device);

/// The kernel's large scratch buffers. On the CPU they live in the caller's GptqWorkspace and
/// are reused by the next call when big enough; elsewhere they are plain at::empty. A scratch
/// tensor is valid until the next request of the same slot from the same workspace.
enum class Scratch { Wt, WtPermuted, H, HPermuted, U, kCount };
static_assert(size_t(Scratch::kCount) == GptqWorkspace::kSlots);
at::Tensor scratch(GptqWorkspace& workspace, Scratch slot, at::IntArrayRef sizes,
                   at::Device device);  // float32

/// Whether every element of a float tensor is finite (a parallel scan for CPU float32).
bool all_finite(const at::Tensor& t);

/// Steps 5–6 for one damp with ATen ops, the reference's route: L = chol(H + λI), H⁻¹ =
/// cholesky_inverse(L), U = chol(H⁻¹, upper) (gptq_generic.cpp). H [c, c] float32 on any device.
/// Returns what failed, or "" with U set ([c, c], upper).
std::string inverse_factor_aten(const at::Tensor& H, double damp, at::Tensor& U);

/// The CPU implementation (gptq_cpu.cpp): CPU tensors only.
GptqResult gptq_quantize_cpu(const at::Tensor& W,
                             at::Tensor H,
                             const core::QuantSpec& spec,
                             const GptqOptions& opts,
                             bool consume_hessian,
                             GptqWorkspace& workspace);

/// The CUDA implementation (gptq_cuda.cu; built with CALQ_CUDA=ON only): CUDA tensors.
GptqResult gptq_quantize_cuda(const at::Tensor& W,
                              const at::Tensor& H,
                              const core::QuantSpec& spec,
                              const GptqOptions& opts);

}  // namespace calq::core::kernels::gptq_detail
