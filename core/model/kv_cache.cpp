#include "core/model/kv_cache.h"

#include <algorithm>

#include <ATen/ATen.h>

#include "core/error.h"

namespace calq::core {

std::pair<at::Tensor, at::Tensor> KvCache::append(int64_t layer, const at::Tensor& k,
                                                  const at::Tensor& v) {
  CALQ_ASSERT(layer >= 0 && layer < static_cast<int64_t>(layers_.size()),
              "kv cache of {} layers asked for layer {}", layers_.size(), layer);
  CALQ_ASSERT(k.dim() == 4 && k.sizes() == v.sizes(),
              "kv cache: k and v of {} and {} dimensions; expected both [B, S, nkv, hd]", k.dim(),
              v.dim());
  Layer& c = layers_[static_cast<size_t>(layer)];
  CALQ_ASSERT(c.filled == length_, "kv cache layer {}: {} positions written, {} cached", layer,
              c.filled, length_);
  const int64_t batch = k.size(0), n_new = k.size(1), n_kv = k.size(2), head_dim = k.size(3);
  const int64_t total = length_ + n_new;
  const int64_t capacity = c.k.defined() ? c.k.size(2) : 0;
  if (total > capacity) {
    // Grow by doubling (or straight to the reserved size): appends stay amortised O(new).
    const int64_t grown = std::max({total, 2 * capacity, reserved_});
    const auto grow = [&](const at::Tensor& old, const at::Tensor& like) {
      at::Tensor t = at::empty({batch, n_kv, grown, head_dim}, like.options());
      if (length_ > 0) t.narrow(2, 0, length_).copy_(old.narrow(2, 0, length_));
      return t;
    };
    c.k = grow(c.k, k);
    c.v = grow(c.v, v);
  } else {
    CALQ_ASSERT(c.k.size(0) == batch && c.k.size(1) == n_kv && c.k.size(3) == head_dim,
                "kv cache layer {}: new keys [{}, {}, {}] do not match the cached ones", layer,
                batch, n_kv, head_dim);
  }
  c.k.narrow(2, length_, n_new).copy_(k.permute({0, 2, 1, 3}));
  c.v.narrow(2, length_, n_new).copy_(v.permute({0, 2, 1, 3}));
  c.filled = total;
  return {c.k.narrow(2, 0, total), c.v.narrow(2, 0, total)};
}

void KvCache::advance(int64_t n_new) {
  for (size_t i = 0; i < layers_.size(); ++i)
    CALQ_ASSERT(layers_[i].filled == length_ + n_new,
                "kv cache layer {}: {} positions, expected {}", i, layers_[i].filled,
                length_ + n_new);
  length_ += n_new;
}

}  // namespace calq::core
