#include "core/model/attention.h"

#include <algorithm>

#include <ATen/ATen.h>

#include "core/error.h"

namespace calq::core {
namespace {

constexpr int64_t kQueryBlock = 128;                    // positions per query block
constexpr int64_t kScoreBlockElems = int64_t{1} << 19;  // ~2 MiB of fp32 scores per step

}  // namespace

at::Tensor causal_attention(const at::Tensor& q,
                            const at::Tensor& k,
                            const at::Tensor& v,
                            double scale,
                            const at::Tensor& mask,
                            double softcap) {
  const int64_t batch = q.size(0), seq = q.size(1), n_heads = q.size(2), head_dim = q.size(3);
  const int64_t n_kv = k.size(2);
  CALQ_ASSERT(n_kv > 0 && n_heads % n_kv == 0, "{} query heads, {} kv heads", n_heads, n_kv);
  const int64_t group = n_heads / n_kv, n_pairs = batch * n_kv;

  // GQA without repeat_kv: the `group` query heads that share a kv head become extra rows of
  // one GEMM per (batch, kv head) pair. Rows are position-major (row = s·group + g) so a block
  // of query positions is a contiguous row range. Query head h reads kv head h / group, as
  // transformers repeat_kv.
  const at::Tensor qg = q.reshape({batch, seq, n_kv, group, head_dim})
                            .permute({0, 2, 1, 3, 4})
                            .reshape({n_pairs, seq * group, head_dim});
  const at::Tensor kk = k.permute({0, 2, 1, 3}).reshape({n_pairs, seq, head_dim});
  const at::Tensor vv = v.permute({0, 2, 1, 3}).reshape({n_pairs, seq, head_dim});
  at::Tensor out = at::empty({n_pairs, seq * group, head_dim}, q.options());

  // Blocks of query positions [s0, s1) only need keys [0, s1): the causal upper triangle is
  // never computed. Pairs are chunked so each step's scores stay small and cache-resident
  // (large fresh tensors cost page faults on every forward).
  for (int64_t s0 = 0; s0 < seq; s0 += kQueryBlock) {
    const int64_t s1 = std::min(seq, s0 + kQueryBlock), rows = (s1 - s0) * group;
    const at::Tensor block_mask = mask.narrow(0, s0, s1 - s0)
                                      .narrow(1, 0, s1)
                                      .unsqueeze(1)
                                      .expand({s1 - s0, group, s1})
                                      .reshape({rows, s1});
    const int64_t chunk = std::max<int64_t>(1, kScoreBlockElems / (rows * s1));
    for (int64_t p0 = 0; p0 < n_pairs; p0 += chunk) {
      const int64_t np = std::min(chunk, n_pairs - p0);
      const at::Tensor qb = qg.narrow(0, p0, np).narrow(1, s0 * group, rows);
      const at::Tensor kb = kk.narrow(0, p0, np).narrow(1, 0, s1);
      const at::Tensor vb = vv.narrow(0, p0, np).narrow(1, 0, s1);
      // q kᵀ · scale + mask (transformers eager order), softmax in float32, cast back.
      at::Tensor scores;
      if (softcap > 0) {  // eager_attention_forward: (q kᵀ · scale) / cap, tanh, · cap, + mask
        scores = at::bmm(qb, kb.transpose(1, 2)).mul_(scale).div_(softcap).tanh_().mul_(softcap);
        scores.add_(block_mask);
      } else {
        scores = at::baddbmm(block_mask, qb, kb.transpose(1, 2), 1.0, scale);
      }
      at::Tensor probs = at::softmax(scores, -1, at::kFloat);
      if (probs.scalar_type() != q.scalar_type())
        probs = probs.to(q.scalar_type());
      out.narrow(0, p0, np).narrow(1, s0 * group, rows).copy_(at::bmm(probs, vb));
    }
  }
  return out.view({batch, n_kv, seq, group, head_dim})
      .permute({0, 2, 1, 3, 4})
      .reshape({batch, seq, n_heads * head_dim});
}

}  // namespace calq::core
