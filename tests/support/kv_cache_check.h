// Incremental decoding against the full forward: the first `prefill` tokens run as one cached
// forward, the rest one token at a time, and each step's logits are compared with the full
// forward's logits at that position. Used by the generation tests and the family fixtures.
#pragma once

#include <algorithm>
#include <cstdint>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include "core/model/kv_cache.h"
#include "core/model/model.h"

namespace calq::test {

/// Decoding matches the full forward to float32 noise: the same ops on the same rows, but the
/// GEMMs run on 1-row inputs and the attention reads its keys from the cache (another blocking
/// of the same sums). Relative to the largest |logit| of the sequence, which is ~1-15 here.
constexpr double kDecodeRelTolF32 = 1e-5;

/// The largest |cached − full| over every decoded position and row of ids [B, S], divided by
/// the full forward's largest |logit|. prefill in 1..S.
inline double kv_cache_relative_error(core::Model& model, const at::Tensor& ids, int64_t prefill) {
  at::NoGradGuard no_grad;
  const at::Tensor full = model.forward(ids).to(at::kDouble);  // [B, S, V]
  const int64_t seq = ids.size(1);
  core::KvCache cache(model.n_layers());
  double err = 0;
  for (int64_t p = 0; p < seq;) {
    const int64_t n = p == 0 ? std::min(prefill, seq) : 1;
    const at::Tensor step = model.forward_cached(ids.narrow(1, p, n), cache).to(at::kDouble);
    p += n;
    const at::Tensor want = full.select(1, p - 1);  // [B, V]
    err = std::max(err, (step - want).abs().max().item<double>());
  }
  return err / std::max(1e-30, full.abs().max().item<double>());
}

}  // namespace calq::test
