#include "core/model/attention.h"

#include <ATen/ATen.h>

#include "core/error.h"

namespace calq::core {

at::Tensor causal_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            double scale, const at::Tensor& mask) {
  const int64_t batch = q.size(0), seq = q.size(1), n_heads = q.size(2), head_dim = q.size(3);
  const int64_t n_kv = k.size(2);
  CALQ_ASSERT(n_kv > 0 && n_heads % n_kv == 0, "{} query heads, {} kv heads", n_heads, n_kv);
  const int64_t group = n_heads / n_kv;

  // GQA without repeat_kv: the `group` query heads sharing a kv head are stacked along the
  // row axis, so each (batch, kv head) pair is one [group·S, hd] x [hd, S] GEMM.
  const at::Tensor qg = q.reshape({batch, seq, n_kv, group, head_dim})
                            .permute({0, 2, 3, 1, 4})
                            .reshape({batch * n_kv, group * seq, head_dim});
  const at::Tensor kk = k.permute({0, 2, 1, 3}).reshape({batch * n_kv, seq, head_dim});
  const at::Tensor vv = v.permute({0, 2, 1, 3}).reshape({batch * n_kv, seq, head_dim});
  const at::Tensor rows_mask = group == 1 ? mask : mask.repeat({group, 1});  // [group·S, S]

  // scale · q kᵀ + mask in one GEMM call (beta = 1 adds the broadcast mask).
  const at::Tensor scores = at::baddbmm(rows_mask, qg, kk.transpose(1, 2), 1.0, scale);
  at::Tensor probs = at::softmax(scores, -1, at::kFloat);  // float32, as transformers
  if (probs.scalar_type() != q.scalar_type()) probs = probs.to(q.scalar_type());
  const at::Tensor out = at::bmm(probs, vv);  // [B·nkv, group·S, hd]
  return out.view({batch, n_kv, group, seq, head_dim})
      .permute({0, 3, 1, 2, 4})
      .reshape({batch, seq, n_heads * head_dim});
}

}  // namespace calq::core
