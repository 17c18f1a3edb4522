// The GPTQ kernel of docs/algorithms.md §3.1 on one linear: W [rows, cols] and its Hessian
// H = 2XᵀX/N [cols, cols] in, integer codes + scales/zeros + g_idx (core::QuantizedTensor) and
// the losses out. A pure function: no logging, no global state, and it changes neither thread
// count; its scratch lives in a caller-owned GptqWorkspace. The GPTQ pass (layer loop,
// report.json) and `calq bench gptq` call it. docs/kernels.md describes the kernel layer.
//
// Implementations of the same algorithm, one per file: gptq_cpu.cpp (float32 on a transposed
// copy, OpenBLAS GEMM for the lazy batch update, LAPACK for the inverse factor), gptq_cuda.cu
// (one thread per row for the in-block loop, cuBLAS for the lazy update; CALQ_CUDA=ON builds),
// and gptq_generic.cpp, the reference's op sequence in at:: ops that the tests compare both with.
// They agree on codes up to float-reduction ties (tests/core/gptq_kernel_test.cpp,
// tests/cuda/cuda_parity_test.cpp).
#pragma once

#include <array>

#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>

#include "core/quant/quantized_tensor.h"
#include "core/quant/quantizer.h"

namespace calq::core::kernels {

/// The YAML `gptq: {act_order, damp, block_size, static_groups}` plus the §3.5-a flavour switch.
struct GptqOptions {
  bool act_order = false;    ///< §3.1 step 4: process columns by descending diag(H) (stable sort)
  double damp = 0.01;        ///< §3.1 step 5: λ = damp · mean(diag(H)); ≥ 0
  int64_t block_size = 128;  ///< §3.1 step 7: columns per lazy batch; ≥ 1
  bool static_groups = false;  ///< §3.1 step 3: group params fitted up front in original order
  /// §3.5-a. false (the reference, IST-DASLab/gptq): dynamic group params are fitted on the outer
  /// W, which lacks the current block's updates. true ("clean"): fitted on the fully updated
  /// weights at the group's first column (in-block updates and pending lazy updates applied).
  bool fit_on_updated_block = false;
  /// §3.4. When a Cholesky factorization fails, damp is multiplied by 10 (0 → 0.01) and the
  /// factorization retried, at most this many times; then calq::Error. Never a silent RTN fallback.
  int max_damp_escalations = 2;
};

struct GptqResult {
  /// codes [rows, cols] int32 in the ORIGINAL column order; scales/zeros [rows, n_groups] in
  /// group-index order (processing order for act-order dynamic groups); g_idx [cols] per §3.1
  /// step 9 (AutoGPTQ convention). scale_dtype = spec.scale_dtype; fitting used float32 scales.
  core::QuantizedTensor q;
  /// [rows, cols] float32 = q.dequantize(at::kFloat), bit for bit (what GPTQ propagated errors
  /// against; the reference's Q).
  at::Tensor dequantized;
  double reference_loss = 0;  ///< ½ Σ (w − q)² / d², summed over rows and columns (gptq.py)
  double proxy_loss = 0;      ///< tr(ΔW H ΔWᵀ) / rows, ΔW = W − Q, H as given (undamped)
  double damp_used = 0;       ///< the relative damp of the factorization that succeeded
  int damp_escalations = 0;   ///< how many times damp was raised (0 = opts.damp worked)
  int64_t dead_columns = 0;   ///< columns with H[j, j] == 0 (§3.1 step 2)
  std::vector<int64_t> perm;  ///< processing order (original column of each position); empty
                              ///< without act-order
  double seconds = 0;         ///< wall time of the whole call
  double proxy_seconds = 0;   ///< the part of `seconds` spent computing proxy_loss
};

/// The large float32 buffers of gptq_quantize (about cols·rows + 3·cols² floats), owned by the
/// caller so that same-shape calls reuse them: a fresh 64 MiB buffer costs 5–180 ms of page
/// faults and zeroing here, a sizable share of a 4096² run. The GPTQ pass keeps one per step of
/// a layer and releases it after; nothing outlives its owner. One call at a time per workspace.
struct GptqWorkspace {
  static constexpr size_t kSlots = 5;
  std::array<at::Tensor, kSlots> buffers;  ///< by gptq_detail::Scratch slot; empty until used
  void release();
};

/// GPTQ-quantizes one linear (docs/algorithms.md §3.1 steps 1–10).
///  - W [rows, cols], any float dtype, finite; the layer weight (copied, never modified).
///  - H [cols, cols], float32 (float64/16 are converted to float32 as the reference works in
///    fp32), finite, on W's device; 2XᵀX/N as calib accumulates it (its scale does not change the
///    codes, damping being relative, but it scales both losses).
///  - spec: bits/grid/granularity (PerChannel, PerTensor, or PerGroup with group_size g; a g that
///    does not divide cols gives a shorter last group, column // g, as the reference).
/// CPU tensors run the OpenBLAS implementation, CUDA tensors the CUDA one (a CPU-only build
/// throws "calq was built without CUDA"; core/kernels/device.h), other devices are refused. Runs on
/// the thread counts the process has (ATen's for the setup, OpenBLAS's for the GEMMs; both set
/// once by the CLI, cli/thread_count.cpp) and changes neither. Deterministic for a given thread
/// count (a different count may change BLAS rounding, hence rare codes). Throws calq::Error on bad
/// shapes or options, non-finite input, or a Hessian that stays non-positive-definite after
/// opts.max_damp_escalations escalations. With `consume_hessian` (CPU) a float32 contiguous H is
/// damped and permuted in place rather than in a copy, and freed once factorized if the caller
/// handed over its last reference (std::move): the caller must not read it afterwards.
/// `workspace`: buffers to reuse (see GptqWorkspace); null = fresh buffers freed on return.
GptqResult gptq_quantize(const at::Tensor& W,
                         at::Tensor H,
                         const core::QuantSpec& spec,
                         const GptqOptions& opts = {},
                         bool consume_hessian = false,
                         GptqWorkspace* workspace = nullptr);

/// The same algorithm written with at:: ops only (IST-DASLab/gptq's op sequence, including
/// L = chol(H), H⁻¹ = cholesky_inverse(L), U = chol(H⁻¹, upper)), for any device, without
/// dispatch. Public so that tests can compare it with the CPU and CUDA implementations.
GptqResult gptq_quantize_generic(const at::Tensor& W,
                                 const at::Tensor& H,
                                 const core::QuantSpec& spec,
                                 const GptqOptions& opts = {});

}  // namespace calq::core::kernels
