// The CPU implementation of GPTQ (docs/algorithms.md §3.1 steps 5–8). float32 throughout, on a
// transposed copy Wt [cols, rows] so that a column of W is a contiguous row. The lazy batch update
// is one OpenBLAS SGEMM per block and the inverse factor comes from LAPACK (gptq_linalg.cpp); the
// in-block column loop walks tiles of rows (GPTQ never mixes rows: a row's errors feed only that
// row, its group params are fitted on that row), each tile packed so that it stays in cache.
#include <algorithm>
#include <array>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <cblas.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#include <xmmintrin.h>
#endif

#include "core/kernels/gptq.h"
#include "core/kernels/gptq_linalg_cpu.h"
#include "core/kernels/gptq_steps.h"
#include "core/error.h"

namespace calq::core::kernels::gptq_detail {
namespace {

// Rows per tile of the in-block loop. A tile of the current block is packed contiguously
// ([B][kTileRows], 64 KiB at B = 128): rows of W1 at their natural stride (rows · 4 bytes, a power
// of two for real layers) would all map to the same cache sets.
constexpr int64_t kTileRows = 128;

// Round half to even as std::nearbyint under the default rounding mode (§0), in two float ops the
// compiler vectorizes: for |x| < 2^22, x + 1.5·2^23 lands in [2^23, 2^24) where floats are the
// integers, so the add rounds x to the nearest integer, ties to even, and the subtraction is
// exact. Larger |x| are pinned to ±2^22 first: callers clamp the result into a code range of at
// most 2^8 around a zero point below 2^8, where ±2^22 and nearbyint(x) clamp alike.
inline float round_half_even(float x) {
  constexpr float kLimit = 4194304.0f;   // 2^22
  constexpr float kMagic = 12582912.0f;  // 1.5 · 2^23
  const float xc = std::min(std::max(x, -kLimit), kLimit);
  return (xc + kMagic) - kMagic;
}

// min(max(v, lo), hi) as at::clamp, except that a NaN becomes lo (no UB in the int cast below).
inline float clamp_code(float v, float lo, float hi) {
  v = v > lo ? v : lo;
  return v < hi ? v : hi;
}

// The hot loops below are compiled for AVX-512, AVX2 and the baseline (ifunc dispatch at load
// time). They are element-wise IEEE float ops with no reductions and, as the whole file, built
// with -ffp-contract=off, so every clone gives the same bits (no FMA: the reference multiplies
// and subtracts in two roundings).
#define CALQ_GPTQ_HOT __attribute__((target_clones("avx512f", "avx2", "default")))

// §3.1 step 7 for one column segment of n rows: q = Q(w; s, z), the error e = (w − q)/d and the
// reference's loss (w − q)²/d², added per row into `loss` (double). The grid arithmetic is
// core/quant/quantizer.cpp codes_f32 and core::dequantize op for op (x / s true division; ct grids
// clamp before rounding), so codes and dequantized values equal core's bit for bit
// (gptq_kernel_test checks it).
template <bool kCtOrder>
inline __attribute__((always_inline)) void quantize_column(const float* __restrict w,
                                                           const float* __restrict s,
                                                           const float* __restrict z,
                                                           int64_t n,
                                                           float d,
                                                           float qmin,
                                                           float qmax,
                                                           int32_t* __restrict code,
                                                           float* __restrict deq,
                                                           float* __restrict e,
                                                           double* __restrict loss) {
  const float dd = d * d;
  for (int64_t i = 0; i < n; ++i) {
    const float x = w[i] / s[i];
    const float v = kCtOrder ? round_half_even(clamp_code(x + z[i], qmin, qmax))
                             : clamp_code(round_half_even(x) + z[i], qmin, qmax);
    code[i] = static_cast<int32_t>(v);
    const float q = s[i] * (v - z[i]);  // = s · (float(code) − z), core::dequantize
    const float err = w[i] - q;
    deq[i] = q;
    e[i] = err / d;
    loss[i] += double((err * err) / dd);
  }
}

CALQ_GPTQ_HOT void quantize_column_gptq(const float* w,
                                        const float* s,
                                        const float* z,
                                        int64_t n,
                                        float d,
                                        float qmin,
                                        float qmax,
                                        int32_t* code,
                                        float* deq,
                                        float* e,
                                        double* loss) {
  quantize_column<false>(w, s, z, n, d, qmin, qmax, code, deq, e, loss);
}

CALQ_GPTQ_HOT void quantize_column_ct(const float* w,
                                      const float* s,
                                      const float* z,
                                      int64_t n,
                                      float d,
                                      float qmin,
                                      float qmax,
                                      int32_t* code,
                                      float* deq,
                                      float* e,
                                      double* loss) {
  quantize_column<true>(w, s, z, n, d, qmin, qmax, code, deq, e, loss);
}

// The eager in-block update of one tile: w[t'][i] −= e[i] · u[t'] for t' < m (rows `stride`
// apart): the reference's W1[:, i:] −= err ⊗ U1[i, i:], product and difference rounded apart.
CALQ_GPTQ_HOT void update_tile(const float* __restrict e,
                               const float* __restrict u,
                               int64_t m,
                               float* __restrict w,
                               int64_t stride,
                               int64_t n) {
  for (int64_t t = 0; t < m; ++t) {
    const float ut = u[t];
    float* __restrict row = w + t * stride;
    for (int64_t i = 0; i < n; ++i)
      row[i] -= e[i] * ut;
  }
}

// Copies the first n entries of nb rows `stride` apart (a tile's outputs, one row per column of
// W) transposed into out[i · cols + t], with SSE2 4 × 4 transposes (bit moves: T may be int32).
template <typename T>
void transpose_tile(const T* tile, int64_t stride, int64_t nb, int64_t n, T* out, int64_t cols) {
  static_assert(sizeof(T) == sizeof(float), "4-byte elements");
  int64_t i0 = 0;
#if defined(__SSE2__)
  const auto* src = reinterpret_cast<const float*>(static_cast<const void*>(tile));
  auto* dst = reinterpret_cast<float*>(static_cast<void*>(out));
  for (; i0 + 4 <= n; i0 += 4) {
    int64_t t0 = 0;
    for (; t0 + 4 <= nb; t0 += 4) {
      __m128 r0 = _mm_loadu_ps(src + (t0 + 0) * stride + i0);
      __m128 r1 = _mm_loadu_ps(src + (t0 + 1) * stride + i0);
      __m128 r2 = _mm_loadu_ps(src + (t0 + 2) * stride + i0);
      __m128 r3 = _mm_loadu_ps(src + (t0 + 3) * stride + i0);
      _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
      _mm_storeu_ps(dst + (i0 + 0) * cols + t0, r0);
      _mm_storeu_ps(dst + (i0 + 1) * cols + t0, r1);
      _mm_storeu_ps(dst + (i0 + 2) * cols + t0, r2);
      _mm_storeu_ps(dst + (i0 + 3) * cols + t0, r3);
    }
    for (; t0 < nb; ++t0) {
      for (int64_t i = i0; i < i0 + 4; ++i)
        out[i * cols + t0] = tile[t0 * stride + i];
    }
  }
#endif
  for (; i0 < n; ++i0) {
    for (int64_t t = 0; t < nb; ++t)
      out[i0 * cols + t] = tile[t * stride + i0];
  }
}

// Step 8, Q ← Q[:, invperm], row by row (a row is cache-resident): out[i][j] = row[invperm[j]].
template <typename T>
void unpermute_columns(T* data, int64_t rows, int64_t cols, const std::vector<int64_t>& invperm) {
  std::vector<T> row(static_cast<size_t>(cols));
  for (int64_t i = 0; i < rows; ++i) {
    T* out = data + i * cols;
    std::copy(out, out + cols, row.begin());
    for (int64_t j = 0; j < cols; ++j)
      out[j] = row[size_t(invperm[size_t(j)])];
  }
}

/// Σ (w − q)² over the columns j with h_diag[j] != 0, in double: ‖ΔW‖² of the live columns.
double live_squared_error(const float* w, const float* deq, int64_t rows, int64_t cols,
                          const float* h_diag) {
  double total = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const float* wr = w + r * cols;
    const float* qr = deq + r * cols;
    double row = 0;
    for (int64_t j = 0; j < cols; ++j) {
      const double d = double(wr[j]) - double(qr[j]);
      row += h_diag[j] != 0.0f ? d * d : 0.0;
    }
    total += row;
  }
  return total;
}

}  // namespace

GptqResult gptq_quantize_cpu(const at::Tensor& W_in,
                             at::Tensor H_in,
                             const core::QuantSpec& spec,
                             const GptqOptions& opts,
                             bool consume_hessian,
                             GptqWorkspace& workspace) {
  const auto start = std::chrono::steady_clock::now();
  CALQ_CHECK(W_in.device().is_cpu() && H_in.device().is_cpu(),
             "gptq: the CPU implementation got tensors on {}; expected cpu", W_in.device().str());
  // Live columns for the proxy loss, read before prepare may zero-fix or permute H in place.
  const at::Tensor H_diag = H_in.diagonal().to(at::kFloat).contiguous();
  GptqSetup setup = prepare(W_in, H_in, spec, opts, consume_hessian, workspace);  // ATen ops, all threads
  if (consume_hessian) H_in = at::Tensor();  // setup.H is the only handle left, or a copy
  const int64_t rows = setup.Wt.size(1);
  const int64_t cols = setup.Wt.size(0);
  CALQ_CHECK(rows <= INT_MAX && cols <= INT_MAX,
             "gptq: weight [{}, {}] too large for BLAS 32-bit sizes", rows, cols);
  const at::Device cpu(at::kCPU);
  GptqResult result;

  // Steps 5–6, escalating damp on failure (§3.4).
  at::Tensor u = scratch(workspace, Scratch::U, {cols, cols}, cpu);
  factor_with_escalating_damp(cols, opts, result, [&](double damp) {
    const auto lambda = static_cast<float>(damp * setup.mean_diag);
    return inverse_factor(setup.H.data_ptr<float>(), cols, lambda, u.data_ptr<float>());
  });
  // Only U is read from here on: a consumed H (a 7B down_proj's: 0.46 GB) goes now.
  if (consume_hessian) setup.H = at::Tensor();

  // Step 7. The outer W is setup.Wt ([cols, rows], lazily updated in place); the current block
  // W1 and its outputs live tile by tile ([n_tiles][B][kTileRows]); E1 is [B, rows] for the GEMM.
  const int64_t B = std::min(opts.block_size, cols);
  const int64_t g = setup.group_size;
  const int64_t n_tiles = (rows + kTileRows - 1) / kTileRows;
  constexpr int64_t kT = kTileRows;
  at::Tensor w1 = at::empty({n_tiles, B, kT}, at::kFloat);
  at::Tensor block_codes = at::empty({n_tiles, B, kT}, at::kInt);
  at::Tensor block_deq = at::empty({n_tiles, B, kT}, at::kFloat);
  at::Tensor e1 = at::empty({B, rows}, at::kFloat);
  at::Tensor codes = empty_buffer({rows, cols}, at::kInt, cpu);  // the result, [rows, cols]
  at::Tensor deq = empty_buffer({rows, cols}, at::kFloat, cpu);
  at::Tensor scales = setup.dynamic_groups ? at::empty({setup.n_groups, rows}, at::kFloat)
                                           : setup.fixed_scales.contiguous();
  at::Tensor zeros = setup.dynamic_groups ? at::empty({setup.n_groups, rows}, at::kInt)
                                          : setup.fixed_zeros.contiguous();
  at::Tensor zeros_f = zeros.to(at::kFloat);  // the zero as the float the arithmetic uses

  float* wt_p = setup.Wt.data_ptr<float>();
  float* w1_p = w1.data_ptr<float>();
  float* e1_p = e1.data_ptr<float>();
  const float* u_p = u.data_ptr<float>();
  const int64_t* pos_group = setup.pos_group.data_ptr<int64_t>();
  const float* scales_p = scales.data_ptr<float>();  // stable: filled in place by fit_group
  const float* zeros_fp = zeros_f.data_ptr<float>();
  int32_t* block_codes_p = block_codes.data_ptr<int32_t>();
  float* block_deq_p = block_deq.data_ptr<float>();
  int32_t* codes_p = codes.data_ptr<int32_t>();
  float* deq_p = deq.data_ptr<float>();
  const core::CodeRange range = core::code_range(spec.grid, spec.bits);
  const auto qmin = static_cast<float>(range.qmin);
  const auto qmax = static_cast<float>(range.qmax);
  const bool ct_order = spec.grid == core::Grid::CtSym || spec.grid == core::Grid::CtAsym;
  std::vector<double> tile_loss(static_cast<size_t>(n_tiles), 0.0);

  // Dynamic group params at processing position k = i1 + t, k % g == 0 (§3.1 step 7), from
  // columns [k, k + g) of the outer W (reference, stale) or of the fully updated W (§3.5-a).
  auto fit_group = [&](int64_t i1, int64_t t, int64_t nb) {
    const int64_t k = i1 + t;
    const int64_t len = std::min(g, cols - k);
    at::Tensor src = setup.Wt.narrow(0, k, len);
    if (opts.fit_on_updated_block) {
      src = at::empty({len, rows}, at::kFloat);
      float* src_p = src.data_ptr<float>();
      const int64_t in_block = std::min(len, nb - t);
      if (t == 0)  // the block is not packed yet: W1 is still the outer W
        std::memcpy(src_p, wt_p + k * rows, sizeof(float) * in_block * rows);
      for (int64_t t2 = t; t > 0 && t2 < t + in_block; ++t2) {  // unpack W1's tiles
        for (int64_t tile = 0; tile < n_tiles; ++tile) {
          const int64_t r0 = tile * kT;
          std::memcpy(src_p + (t2 - t) * rows + r0, w1_p + (tile * B + t2) * kT,
                      sizeof(float) * std::min(kT, rows - r0));
        }
      }
      if (len > in_block) {  // past the block: outer W minus this block's pending update
        float* tail = src_p + in_block * rows;
        std::memcpy(tail, wt_p + (i1 + nb) * rows, sizeof(float) * (len - in_block) * rows);
        if (t > 0) {
          cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, int(len - in_block), int(rows),
                      int(t), -1.0f, u_p + i1 * cols + i1 + nb, int(cols), e1_p, int(rows), 1.0f,
                      tail, int(rows));
        }
      }
    }
    const core::QuantParams p = core::fit_params(src.t(), spec);  // one (s, z) per row of W
    const int64_t group = k / g;
    scales[group].copy_(p.scale);
    zeros[group].copy_(p.zero);
    zeros_f[group].copy_(p.zero);
  };

  // Columns [ta, tb) of the block [i1, i1 + nb) for every row, tile by tile: quantize, then the
  // eager in-block update W1[:, t'] −= e · U[k, i1 + t'] for t' > t. The first segment packs the
  // tile from the outer W, the last one writes its outputs to codes/deq ([rows, cols], processing
  // order). On this thread only: the tiles are small, the GEMMs between them carry the threads.
  auto run_columns = [&](int64_t i1, int64_t nb, int64_t ta, int64_t tb) {
    std::array<double, kT> loss{};  // per row of the tile
    for (int64_t tile = 0; tile < n_tiles; ++tile) {
      loss.fill(0.0);
      const int64_t r0 = tile * kT;
      const int64_t n = std::min(kT, rows - r0);
      float* w1_tile = w1_p + tile * B * kT;
      int32_t* codes_tile = block_codes_p + tile * B * kT;
      float* deq_tile = block_deq_p + tile * B * kT;
      if (ta == 0) {
        for (int64_t t = 0; t < nb; ++t)
          std::memcpy(w1_tile + t * kT, wt_p + (i1 + t) * rows + r0, sizeof(float) * n);
      }
      for (int64_t t = ta; t < tb; ++t) {
        const int64_t k = i1 + t;
        const float* u_row = u_p + k * cols;
        const int64_t offset = pos_group[k] * rows + r0;
        float* w = w1_tile + t * kT;
        float* e = e1_p + t * rows + r0;
        (ct_order ? quantize_column_ct : quantize_column_gptq)(
            w, scales_p + offset, zeros_fp + offset, n, u_row[k], qmin, qmax, codes_tile + t * kT,
            deq_tile + t * kT, e, loss.data());
        update_tile(e, u_row + k + 1, nb - t - 1, w + kT, kT, n);
      }
      for (int64_t i = 0; i < n; ++i)
        tile_loss[size_t(tile)] += loss[size_t(i)];
      if (tb == nb) {  // the block's outputs to [rows, cols], still in processing order
        transpose_tile(codes_tile, kT, nb, n, codes_p + r0 * cols + i1, cols);
        transpose_tile(deq_tile, kT, nb, n, deq_p + r0 * cols + i1, cols);
      }
    }
  };

  for (int64_t i1 = 0; i1 < cols; i1 += B) {
    const int64_t i2 = std::min(i1 + B, cols);
    const int64_t nb = i2 - i1;
    for (int64_t ta = 0; ta < nb;) {
      int64_t tb = nb;
      if (setup.dynamic_groups) {  // segments end where the next group starts
        const int64_t k = i1 + ta;
        if (k % g == 0)
          fit_group(i1, ta, nb);
        tb = std::min(nb, (k / g + 1) * g - i1);
      }
      run_columns(i1, nb, ta, tb);
      ta = tb;
    }
    if (i2 < cols) {  // lazy batch update: W[:, i2:] −= E1 · U[i1:i2, i2:]
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, int(cols - i2), int(rows), int(nb),
                  -1.0f, u_p + i1 * cols + i2, int(cols), e1_p, int(rows), 1.0f, wt_p + i2 * rows,
                  int(rows));
    }
  }

  if (setup.perm.defined()) {  // step 8
    std::vector<int64_t> invperm(static_cast<size_t>(cols));
    for (int64_t k = 0; k < cols; ++k)
      invperm[size_t(setup.perm.data_ptr<int64_t>()[k])] = k;
    unpermute_columns(codes_p, rows, cols, invperm);
    unpermute_columns(deq_p, rows, cols, invperm);
  }
  double loss = 0;
  for (double l : tile_loss)
    loss += l;
  check_error_feedback_finite(loss, result.damp_used, cols);
  result.reference_loss = loss / 2;
  assemble(setup, spec, codes, deq, scales, zeros, result);

  // Proxy loss tr(ΔW H ΔWᵀ) from the loop's own sums, no O(rows·cols²) product: ΔW = E·U with
  // E the scaled errors (w − q)/d and Uᵀ U = (H + λI)⁻¹, so tr(ΔW (H + λI) ΔWᵀ) = ‖E‖² = `loss`
  // and tr(ΔW H ΔWᵀ) = ‖E‖² − λ‖ΔW‖². ΔW counts only live columns: GPTQ factorized W with the
  // dead ones zeroed (their codes dequantize to 0), and H is zero there anyway. The two
  // computations agree to ~1e-5 relative on sotu-llama-6L and random layers (float32 U).
  const auto proxy_start = std::chrono::steady_clock::now();
  const at::Tensor W32 = W_in.to(at::kFloat).contiguous();
  const double dw_live = live_squared_error(W32.data_ptr<float>(), deq_p, rows, cols,
                                            H_diag.data_ptr<float>());
  const double lambda = static_cast<float>(result.damp_used * setup.mean_diag);  // as added to diag(H)
  result.proxy_loss = (loss - lambda * dw_live) / double(rows);
  const auto end = std::chrono::steady_clock::now();
  result.proxy_seconds = std::chrono::duration<double>(end - proxy_start).count();
  result.seconds = std::chrono::duration<double>(end - start).count();
  return result;
}

}  // namespace calq::core::kernels::gptq_detail
