// The device-generic implementation of GPTQ (docs/algorithms.md §3.1 steps 5–7): IST-DASLab/gptq
// `fasterquant` op for op with at:: ops, so it runs wherever the tensors live. Per-column dispatch
// makes it slow: gptq_quantize uses gptq_cpu.cpp or gptq_cuda.cu; this one is the readable
// reference the tests compare them with (docs/kernels.md).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <string>

#include <ATen/ATen.h>
#include <fmt/format.h>

#include "core/kernels/gptq.h"
#include "core/kernels/gptq_steps.h"
#include "core/error.h"

namespace calq::core::kernels {
namespace gptq_detail {

// Steps 5–6 for one damp, the reference's route: L = chol(H + λI), H⁻¹ = cholesky_inverse(L),
// U = chol(H⁻¹, upper). Returns what failed, or "" with U set.
std::string inverse_factor_aten(const at::Tensor& H, double damp, at::Tensor& U) {
  at::Tensor Hd = H.clone();
  Hd.diagonal().add_(at::mean(Hd.diagonal()) * damp);  // λ = damp · mean(diag(H)) (float32)
  auto [L, info] = at::linalg_cholesky_ex(Hd);
  if (info.item<int>() != 0)
    return fmt::format("Cholesky factorization failed at leading minor {}", info.item<int>());
  auto [Uc, info_inv] = at::linalg_cholesky_ex(at::cholesky_inverse(L), /*upper=*/true);
  if (info_inv.item<int>() != 0)
    return fmt::format("Cholesky factorization of the inverse failed at leading minor {}",
                       info_inv.item<int>());
  if (!at::isfinite(Uc).all().item<bool>())
    return "non-finite inverse factor";
  U = Uc;
  return {};
}

}  // namespace gptq_detail

GptqResult gptq_quantize_generic(const at::Tensor& W_in,
                                 const at::Tensor& H_in,
                                 const core::QuantSpec& spec,
                                 const GptqOptions& opts) {
  const auto start = std::chrono::steady_clock::now();
  gptq_detail::check_arguments(W_in, H_in, spec, opts);
  // Never in place: the proxy loss below reads H_in as given.
  GptqWorkspace workspace;  // this path reuses nothing between calls
  const gptq_detail::GptqSetup setup =
      gptq_detail::prepare(W_in, H_in, spec, opts, false, workspace);
  const int64_t rows = setup.Wt.size(1);
  const int64_t cols = setup.Wt.size(0);
  const int64_t g = setup.group_size;
  GptqResult result;

  at::Tensor U;
  gptq_detail::factor_with_escalating_damp(cols, opts, result, [&](double damp) {
    return gptq_detail::inverse_factor_aten(setup.H, damp, U);
  });

  // Step 7, as gptq.py fasterquant (W is a view of prepare's own copy, updated in place).
  at::Tensor W = setup.Wt.t();
  at::Tensor Q = at::empty_like(W);
  at::Tensor codes = at::empty({rows, cols}, W.options().dtype(at::kInt));
  at::Tensor scales =
      setup.dynamic_groups ? at::empty({setup.n_groups, rows}, W.options()) : setup.fixed_scales;
  at::Tensor zeros = setup.dynamic_groups
                         ? at::empty({setup.n_groups, rows}, W.options().dtype(at::kInt))
                         : setup.fixed_zeros;
  at::Tensor loss = at::zeros({}, W.options().dtype(at::kDouble));
  const int64_t* pos_group = setup.pos_group.data_ptr<int64_t>();
  for (int64_t i1 = 0; i1 < cols; i1 += opts.block_size) {
    const int64_t i2 = std::min(i1 + opts.block_size, cols);
    const int64_t nb = i2 - i1;
    at::Tensor W1 = W.narrow(1, i1, nb).clone();
    at::Tensor Err1 = at::zeros_like(W1);
    const at::Tensor U1 = U.narrow(0, i1, nb).narrow(1, i1, nb);
    for (int64_t t = 0; t < nb; ++t) {
      const int64_t k = i1 + t;
      if (setup.dynamic_groups && k % g == 0) {
        const int64_t len = std::min(g, cols - k);
        at::Tensor src = W.narrow(1, k, len);  // the outer W: stale in-block (§3.5-a)
        if (opts.fit_on_updated_block) {
          const int64_t in_block = std::min(len, nb - t);
          src = W1.narrow(1, t, in_block);
          if (len > in_block) {
            const at::Tensor pending =
                Err1.narrow(1, 0, t).matmul(U.narrow(0, i1, t).narrow(1, i2, len - in_block));
            src = at::cat({src, W.narrow(1, i2, len - in_block) - pending}, 1);
          }
        }
        const core::QuantParams p = core::fit_params(src, spec);
        scales[k / g].copy_(p.scale);
        zeros[k / g].copy_(p.zero);
      }
      const at::Tensor s = scales[pos_group[k]];
      const at::Tensor z = zeros[pos_group[k]];
      const at::Tensor w = W1.select(1, t);
      const at::Tensor d = U1[t][t];
      const at::Tensor c = core::quantize_codes(w.unsqueeze(1), s, z, spec);
      const at::Tensor q = core::dequantize(c, s, z).flatten();
      codes.select(1, k).copy_(c.flatten());
      Q.select(1, k).copy_(q);
      loss += ((w - q).pow(2) / d.pow(2)).sum(at::kDouble);
      const at::Tensor err = (w - q) / d;
      W1.narrow(1, t, nb - t) -= err.unsqueeze(1).matmul(U1[t].narrow(0, t, nb - t).unsqueeze(0));
      Err1.select(1, t).copy_(err);
    }
    if (i2 < cols) {  // lazy batch update
      W.narrow(1, i2, cols - i2) -= Err1.matmul(U.narrow(0, i1, nb).narrow(1, i2, cols - i2));
    }
  }
  const double total = loss.item<double>();
  gptq_detail::check_error_feedback_finite(total, result.damp_used, cols);
  result.reference_loss = total / 2;

  if (setup.perm.defined()) {  // step 8: Q[:, invperm]
    const at::Tensor invperm = at::argsort(setup.perm).to(W.device());
    codes = codes.index_select(1, invperm);
    Q = Q.index_select(1, invperm);
  }
  gptq_detail::assemble(setup, spec, codes, Q, scales, zeros, result);
  const auto proxy_start = std::chrono::steady_clock::now();
  const at::Tensor dW = W_in.to(at::kFloat) - result.dequantized;
  const at::Tensor H = H_in.to(at::kFloat);
  result.proxy_loss = (dW.matmul(H) * dW).sum(at::kDouble).item<double>() / double(rows);
  const auto end = std::chrono::steady_clock::now();
  result.proxy_seconds = std::chrono::duration<double>(end - proxy_start).count();
  result.seconds = std::chrono::duration<double>(end - start).count();
  return result;
}

}  // namespace calq::core::kernels
