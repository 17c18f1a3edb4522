// The keys and values a decoder has already computed, layer by layer, so that incremental
// decoding (core/eval/generation.h) runs each new token's forward only: an attention layer
// handed a cache through ForwardContext::kv_cache appends its new positions' keys and values
// (after RoPE, before grouped-query sharing) and attends over every cached position.
// Model::forward_cached drives it; docs/generate.md.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

namespace calq::core {

class KvCache {
 public:
  explicit KvCache(int64_t n_layers) : layers_(static_cast<size_t>(n_layers)) {}

  /// Positions every layer holds (advance() counts them in after a forward).
  int64_t length() const { return length_; }
  /// Allocates room for `positions` at the first append instead of growing by doubling.
  void reserve(int64_t positions) { reserved_ = positions; }

  /// Appends layer `layer`'s keys and values of the forward's new positions, k and v
  /// [B, S, nkv, hd], after the length() cached ones; returns all of them, k and v
  /// [B, nkv, length() + S, hd] (views into the cache, valid until the next append).
  std::pair<at::Tensor, at::Tensor> append(int64_t layer, const at::Tensor& k, const at::Tensor& v);

  /// Counts the last forward's n_new positions as cached; every layer must have appended them.
  void advance(int64_t n_new);

 private:
  struct Layer {
    at::Tensor k, v;     // [B, nkv, capacity, hd]
    int64_t filled = 0;  // positions written (length_ before append, length_ + S after)
  };
  std::vector<Layer> layers_;
  int64_t length_ = 0;
  int64_t reserved_ = 0;
};

}  // namespace calq::core
