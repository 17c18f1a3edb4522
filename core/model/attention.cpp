#include "core/model/attention.h"

#include <algorithm>

#include <ATen/ATen.h>

#include "core/error.h"
#include "core/model/kv_cache.h"
#include "core/model/model.h"

namespace calq::core {
namespace {

constexpr int64_t kQueryBlock = 128;                    // positions per query block
constexpr int64_t kScoreBlockElems = int64_t{1} << 19;  // ~2 MiB of fp32 scores per step

/// q [B, S, nh, hd] as the rows of one GEMM per (batch, kv head) pair: [B·nkv, S·group, hd].
/// GQA without repeat_kv: the `group` query heads that share a kv head become extra rows. Rows
/// are position-major (row = s·group + g) so a block of query positions is a contiguous row
/// range. Query head h reads kv head h / group, as transformers repeat_kv.
at::Tensor grouped_queries(const at::Tensor& q, int64_t n_kv) {
  const int64_t batch = q.size(0), seq = q.size(1), n_heads = q.size(2), head_dim = q.size(3);
  CALQ_ASSERT(n_kv > 0 && n_heads % n_kv == 0, "{} query heads, {} kv heads", n_heads, n_kv);
  const int64_t group = n_heads / n_kv;
  return q.reshape({batch, seq, n_kv, group, head_dim})
      .permute({0, 2, 1, 3, 4})
      .reshape({batch * n_kv, seq * group, head_dim});
}

/// softmax(q kᵀ · scale + mask) v for qg [P, S·group, hd] (grouped_queries) over kk, vv
/// [P, past + S, hd], past = kk.size(1) − S: query position s sits at past + s and reads mask
/// row s ([S, past + S]). Returns [B, S, nh · hd] for P = B · n_kv.
at::Tensor attend(const at::Tensor& qg,
                  const at::Tensor& kk,
                  const at::Tensor& vv,
                  int64_t batch,
                  int64_t seq,
                  double scale,
                  const at::Tensor& mask,
                  double softcap) {
  const int64_t n_pairs = qg.size(0), head_dim = qg.size(2), group = qg.size(1) / seq;
  const int64_t n_kv = n_pairs / batch, past = kk.size(1) - seq;
  at::Tensor out = at::empty({n_pairs, seq * group, head_dim}, qg.options());

  // Blocks of query positions [s0, s1) only need keys [0, past + s1): the causal upper triangle
  // is never computed. Pairs are chunked so each step's scores stay small and cache-resident
  // (large fresh tensors cost page faults on every forward).
  for (int64_t s0 = 0; s0 < seq; s0 += kQueryBlock) {
    const int64_t s1 = std::min(seq, s0 + kQueryBlock), rows = (s1 - s0) * group;
    const int64_t keys = past + s1;
    const at::Tensor block_mask = mask.narrow(0, s0, s1 - s0)
                                      .narrow(1, 0, keys)
                                      .unsqueeze(1)
                                      .expand({s1 - s0, group, keys})
                                      .reshape({rows, keys});
    const int64_t chunk = std::max<int64_t>(1, kScoreBlockElems / (rows * keys));
    for (int64_t p0 = 0; p0 < n_pairs; p0 += chunk) {
      const int64_t np = std::min(chunk, n_pairs - p0);
      const at::Tensor qb = qg.narrow(0, p0, np).narrow(1, s0 * group, rows);
      const at::Tensor kb = kk.narrow(0, p0, np).narrow(1, 0, keys);
      const at::Tensor vb = vv.narrow(0, p0, np).narrow(1, 0, keys);
      // q kᵀ · scale + mask (transformers eager order), softmax in float32, cast back.
      at::Tensor scores;
      if (softcap > 0) {  // eager_attention_forward: (q kᵀ · scale) / cap, tanh, · cap, + mask
        scores = at::bmm(qb, kb.transpose(1, 2)).mul_(scale).div_(softcap).tanh_().mul_(softcap);
        scores.add_(block_mask);
      } else {
        scores = at::baddbmm(block_mask, qb, kb.transpose(1, 2), 1.0, scale);
      }
      at::Tensor probs = at::softmax(scores, -1, at::kFloat);
      if (probs.scalar_type() != qg.scalar_type())
        probs = probs.to(qg.scalar_type());
      out.narrow(0, p0, np).narrow(1, s0 * group, rows).copy_(at::bmm(probs, vb));
    }
  }
  return out.view({batch, n_kv, seq, group, head_dim})
      .permute({0, 2, 1, 3, 4})
      .reshape({batch, seq, n_kv * group * head_dim});
}

}  // namespace

at::Tensor causal_attention(const at::Tensor& q,
                            const at::Tensor& k,
                            const at::Tensor& v,
                            double scale,
                            const at::Tensor& mask,
                            double softcap) {
  const int64_t batch = q.size(0), seq = q.size(1), head_dim = q.size(3), n_kv = k.size(2);
  const at::Tensor qg = grouped_queries(q, n_kv);
  const at::Tensor kk = k.permute({0, 2, 1, 3}).reshape({batch * n_kv, seq, head_dim});
  const at::Tensor vv = v.permute({0, 2, 1, 3}).reshape({batch * n_kv, seq, head_dim});
  return attend(qg, kk, vv, batch, seq, scale, mask, softcap);
}

at::Tensor layer_attention(const ForwardContext& ctx,
                           int64_t layer,
                           const at::Tensor& q,
                           const at::Tensor& k,
                           const at::Tensor& v,
                           double scale,
                           const at::Tensor& mask,
                           double softcap) {
  if (ctx.kv_cache == nullptr) return causal_attention(q, k, v, scale, mask, softcap);
  CALQ_ASSERT(ctx.kv_cache->length() == ctx.past, "layer {}: context at position {}, cache {}",
              layer, ctx.past, ctx.kv_cache->length());
  const int64_t batch = q.size(0), seq = q.size(1), head_dim = q.size(3), n_kv = k.size(2);
  // [B, nkv, past + S, hd] views of the cache: merging B and nkv is a view, no copy.
  const auto [kc, vc] = ctx.kv_cache->append(layer, k, v);
  const int64_t total = kc.size(2);
  CALQ_ASSERT(mask.size(0) == seq && mask.size(1) == total, "layer {}: mask [{}, {}] for {} "
              "queries over {} keys", layer, mask.size(0), mask.size(1), seq, total);
  return attend(grouped_queries(q, n_kv), kc.reshape({batch * n_kv, total, head_dim}),
                vc.reshape({batch * n_kv, total, head_dim}), batch, seq, scale, mask, softcap);
}

}  // namespace calq::core
