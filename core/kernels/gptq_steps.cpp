// docs/algorithms.md §3.1 steps 1–4 and 8–10 (shared by the CPU, CUDA and device-generic
// implementations) and the §3.4 damp escalation. Internal to the GPTQ kernel (docs/kernels.md).
#include "core/kernels/gptq_steps.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <numeric>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <fmt/format.h>
#include <sys/mman.h>

#include "core/error.h"
#include "core/shape_text.h"

namespace calq::core::kernels::gptq_detail {
namespace {

// §3.1 step 4: stable descending argsort of diag(H) — ties (dead columns all have 1) keep the
// lower original index first, which torch.argsort does not promise (§3.5-d).
std::vector<int64_t> act_order_perm(const at::Tensor& H) {
  const at::Tensor diag = H.diagonal().to(at::kCPU, at::kFloat).contiguous();
  const float* d = diag.data_ptr<float>();
  std::vector<int64_t> perm(static_cast<size_t>(diag.numel()));
  std::iota(perm.begin(), perm.end(), int64_t{0});
  std::stable_sort(perm.begin(), perm.end(), [d](int64_t a, int64_t b) { return d[a] > d[b]; });
  return perm;
}

}  // namespace

at::Tensor empty_buffer(at::IntArrayRef sizes, at::ScalarType dtype, at::Device device) {
  const at::TensorOptions options = at::TensorOptions().dtype(dtype).device(device);
  int64_t numel = 1;
  for (int64_t size : sizes)
    numel *= size;
  const size_t bytes = size_t(numel) * at::elementSize(dtype);
  constexpr size_t kHugePage = size_t{2} << 20;
  if (!device.is_cpu() || bytes < 4 * kHugePage)
    return at::empty(sizes, options);
  const size_t rounded = (bytes + kHugePage - 1) / kHugePage * kHugePage;
  void* data = std::aligned_alloc(kHugePage, rounded);
  CALQ_CHECK(data != nullptr, "gptq: cannot allocate a {} MiB buffer", rounded >> 20);
  madvise(data, rounded, MADV_HUGEPAGE);  // a hint: failure (no THP) only costs speed
  return at::from_blob(
      data, sizes, [](void* p) { std::free(p); }, options);
}

at::Tensor scratch(GptqWorkspace& workspace, Scratch slot, at::IntArrayRef sizes,
                   at::Device device) {
  if (!device.is_cpu())
    return at::empty(sizes, at::TensorOptions().dtype(at::kFloat).device(device));
  int64_t numel = 1;
  for (int64_t size : sizes)
    numel *= size;
  at::Tensor& cached = workspace.buffers[size_t(slot)];
  if (!cached.defined() || cached.numel() < numel)
    cached = empty_buffer({numel}, at::kFloat, device);
  return cached.narrow(0, 0, numel).view(sizes);
}

bool all_finite(const at::Tensor& t) {
  if (!(t.device().is_cpu() && t.scalar_type() == at::kFloat && t.is_contiguous()))
    return at::isfinite(t).all().item<bool>();
  const float* p = t.data_ptr<float>();
  std::atomic<bool> finite{true};
  at::parallel_for(0, t.numel(), int64_t{1} << 16, [&](int64_t begin, int64_t end) {
    bool ok = true;
    for (int64_t i = begin; i < end; ++i)
      ok &= std::isfinite(p[i]);
    if (!ok)
      finite = false;
  });
  return finite;
}

GptqSetup prepare(const at::Tensor& W_in,
                  const at::Tensor& H_in,
                  const core::QuantSpec& spec,
                  const GptqOptions& opts,
                  bool consume_hessian,
                  GptqWorkspace& workspace) {
  GptqSetup s;
  const int64_t rows = W_in.size(0);
  const int64_t cols = W_in.size(1);
  const at::Device device = W_in.device();
  s.group_size = spec.granularity == core::Granularity::PerGroup ? spec.group_size : -1;
  s.n_groups = s.group_size == -1 ? 1 : (cols + s.group_size - 1) / s.group_size;
  const bool static_groups = s.group_size != -1 && opts.static_groups;
  s.dynamic_groups = s.group_size != -1 && !opts.static_groups;

  // fp32 copies (the reference quantizes `W.clone().float()` against an fp32 H), W transposed.
  at::Tensor Wt = scratch(workspace, Scratch::Wt, {cols, rows}, device).copy_(W_in.t());
  const bool in_place = consume_hessian && H_in.scalar_type() == at::kFloat &&
                        H_in.is_contiguous() && H_in.device() == device;
  at::Tensor H = in_place ? H_in : scratch(workspace, Scratch::H, {cols, cols}, device).copy_(H_in);
  CALQ_CHECK(all_finite(Wt), "gptq: weight {} holds NaN or Inf; expected finite values",
             core::shape_text(W_in.sizes()));
  CALQ_CHECK(all_finite(H),
             "gptq: Hessian {} holds NaN or Inf; expected finite values (check the calibration "
             "statistics)",
             core::shape_text(H_in.sizes()));

  // Step 1: per-channel (or per-tensor) params from the whole W, before dead columns are zeroed
  // (§3.5-b).
  if (s.group_size == -1) {
    const core::QuantParams p = core::fit_params(Wt.t(), spec);
    s.fixed_scales = p.scale.reshape({1, rows});
    s.fixed_zeros = p.zero.reshape({1, rows});
  }

  // Step 2: dead columns (H[j, j] == 0): H[j, j] = 1, W[:, j] = 0.
  const at::Tensor dead = H.diagonal().eq(0);
  s.dead_columns = dead.sum().item<int64_t>();
  if (s.dead_columns > 0) {
    H.diagonal().masked_fill_(dead, 1.0);
    Wt.index_fill_(0, dead.nonzero().flatten(), 0.0);
  }

  // Step 3: static groups, fitted now on W[:, k·g : (k+1)·g] in original order (the last group
  // shorter when g does not divide cols).
  if (static_groups) {
    std::vector<at::Tensor> scales, zeros;
    for (int64_t k = 0; k < s.n_groups; ++k) {
      const int64_t begin = k * s.group_size;
      const int64_t len = std::min(s.group_size, cols - begin);
      const core::QuantParams p = core::fit_params(Wt.narrow(0, begin, len).t(), spec);
      scales.push_back(p.scale);
      zeros.push_back(p.zero);
    }
    s.fixed_scales = at::stack(scales, 0).contiguous();
    s.fixed_zeros = at::stack(zeros, 0).contiguous();
  }

  // Step 4: act-order permutation of W's columns and H's rows and columns.
  std::vector<int64_t> invperm;
  if (opts.act_order) {
    const std::vector<int64_t> perm = act_order_perm(H);
    invperm.resize(perm.size());
    for (size_t k = 0; k < perm.size(); ++k)
      invperm[static_cast<size_t>(perm[k])] = int64_t(k);
    s.perm = at::tensor(perm, at::kLong);
    const at::Tensor p = s.perm.to(device);
    at::Tensor permuted = scratch(workspace, Scratch::WtPermuted, {cols, rows}, device);
    at::index_select_out(permuted, Wt, 0, p);
    Wt = permuted;
    at::Tensor half = scratch(workspace, Scratch::HPermuted, {cols, cols}, device);
    at::index_select_out(half, H, 0, p);
    at::index_select_out(H, half, 1, p);
  }
  s.mean_diag = H.diagonal().to(at::kDouble).mean().item<double>();
  s.Wt = Wt;
  s.H = H;

  // Step 9: g_idx per AutoGPTQ — j / g; invperm[j] / g for act-order dynamic groups (groups are
  // consecutive in processing order); all zeros per channel. pos_group[k] = g_idx[perm[k]] is
  // then the params slot of processing position k in every case.
  s.g_idx = at::zeros({cols}, at::kInt);
  s.pos_group = at::zeros({cols}, at::kLong);
  if (s.group_size != -1) {
    int32_t* g_idx = s.g_idx.data_ptr<int32_t>();
    for (int64_t j = 0; j < cols; ++j) {
      const int64_t pos = (opts.act_order && s.dynamic_groups) ? invperm[size_t(j)] : j;
      g_idx[j] = static_cast<int32_t>(pos / s.group_size);
    }
    int64_t* pos_group = s.pos_group.data_ptr<int64_t>();
    const int64_t* perm = opts.act_order ? s.perm.data_ptr<int64_t>() : nullptr;
    for (int64_t k = 0; k < cols; ++k)
      pos_group[k] = g_idx[perm ? perm[k] : k];
  }
  return s;
}

void check_error_feedback_finite(double loss, double damp, int64_t cols) {
  CALQ_CHECK(std::isfinite(loss),
             "gptq: the error feedback diverged (non-finite weights) at damp {:g}; the damped "
             "Hessian [{} x {}] is too ill-conditioned for float32; expected a larger gptq.damp",
             damp, cols, cols);
}

double next_damp(double damp) {
  return damp == 0 ? 0.01 : damp * 10;
}

void fail_factorization(int64_t cols,
                        const GptqOptions& opts,
                        double last_damp,
                        const std::string& what) {
  fail(
      "gptq: the damped Hessian [{} x {}] is not positive definite ({}) even at damp {:g} after "
      "{} escalation(s) from damp {:g}; expected a positive semi-definite H = 2XᵀX/N (check the "
      "calibration statistics of this linear, or raise gptq.max_damp)",
      cols, cols, what, last_damp, opts.max_damp_escalations, opts.damp);
}

void assemble(const GptqSetup& setup,
              const core::QuantSpec& spec,
              const at::Tensor& codes,
              const at::Tensor& dequantized,
              const at::Tensor& scales,
              const at::Tensor& zeros,
              GptqResult& result) {
  if (setup.perm.defined()) {
    result.perm.assign(setup.perm.data_ptr<int64_t>(),
                       setup.perm.data_ptr<int64_t>() + setup.perm.numel());
  }
  core::QuantizedTensor& q = result.q;
  q.codes = codes.contiguous();
  // Step 10: one params column per group, in group-index order.
  q.scales = scales.t().contiguous();
  q.zeros = zeros.t().contiguous();
  q.g_idx = setup.g_idx.to(codes.device());
  q.bits = spec.bits;
  q.grid = spec.grid;
  q.granularity = spec.granularity;
  q.group_size = spec.group_size;
  q.scale_dtype = spec.scale_dtype;
  q.check();
  result.dequantized = dequantized.contiguous();
  result.dead_columns = setup.dead_columns;
}

}  // namespace calq::core::kernels::gptq_detail
