// Causal multi-head / grouped-query attention as one batched matmul per step (no per-head
// loops), shared by every family's layer. Numerics follow transformers'
// eager_attention_forward: scores in the compute dtype, softmax in float32, cast back.
// layer_attention adds incremental decoding: the keys and values of earlier positions come from
// the forward's KvCache (core/model/kv_cache.h).
#pragma once

#include <cstdint>

#include <ATen/core/Tensor.h>

namespace calq::core {

struct ForwardContext;

/// q: [B, S, nh, hd], k and v: [B, S, nkv, hd] (nkv divides nh; query head h reads kv head
/// h / (nh / nkv), as transformers repeat_kv), mask: [S, S] additive (0 / -inf) in q's dtype.
/// Returns softmax(q kᵀ · scale + mask) v as [B, S, nh · hd] in q's dtype. softcap > 0 caps the
/// scores before the mask, cap · tanh(scores / cap) (Gemma 2's attn_logit_softcapping).
at::Tensor causal_attention(const at::Tensor& q,
                            const at::Tensor& k,
                            const at::Tensor& v,
                            double scale,
                            const at::Tensor& mask,
                            double softcap = 0.0);

/// What a layer's attention calls: causal_attention(q, k, v, ...) for a full forward; with
/// ctx.kv_cache, k and v (the S new positions', after RoPE) are appended to layer `layer`'s
/// cache first and the queries attend over all ctx.past + S cached positions, mask
/// [S, ctx.past + S] (make_context(S, past)). Same result shape and numerics.
at::Tensor layer_attention(const ForwardContext& ctx,
                           int64_t layer,
                           const at::Tensor& q,
                           const at::Tensor& k,
                           const at::Tensor& v,
                           double scale,
                           const at::Tensor& mask,
                           double softcap = 0.0);

}  // namespace calq::core
