// karpathy/llama2.c run.c's forward, written plainly (one position at a time with a KV cache,
// interleaved RoPE on pairs (2j, 2j+1), per-head loops) in float64 on a .bin's ORIGINAL Meta-
// layout weights; plus a writer of random llama2.c v0 .bin files. Tests compare calq's
// permuted-to-HF Llama against it (docs/formats.md §5.6: "logits of the converted model vs a direct
// implementation of run.c's forward").
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <vector>

#include <ATen/ATen.h>

namespace calq::test {

/// dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size (negative: unshared classifier),
/// seq_len — the 7 int32 of the header.
using Llama2cHeader = std::array<int32_t, 7>;

inline int64_t llama2c_float_count(const Llama2cHeader& h) {
  const int64_t dim = h[0], hidden = h[1], L = h[2], nh = h[3], nkv = h[4];
  const int64_t V = h[5] < 0 ? -h[5] : h[5], seq = h[6], hd = dim / nh, kv_dim = nkv * hd;
  return V * dim + L * (2 * dim + 2 * dim * dim + 2 * kv_dim * dim + 3 * hidden * dim) + dim +
         seq * hd + (h[5] < 0 ? V * dim : 0);
}

inline void write_llama2c_bin(const std::filesystem::path& path,
                              const Llama2cHeader& h,
                              uint64_t seed) {
  at::manual_seed(seed);
  const at::Tensor w = at::randn({llama2c_float_count(h)}, at::kFloat) * 0.2;
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(h.data()), sizeof(int32_t) * 7);
  out.write(static_cast<const char*>(w.data_ptr()), static_cast<std::streamsize>(w.nbytes()));
}

/// Logits [T, V] (float64) for `tokens` at positions 0..T-1, exactly as run.c's forward().
inline at::Tensor llama2c_reference_logits(const std::filesystem::path& path,
                                           const std::vector<int64_t>& tokens) {
  std::ifstream in(path, std::ios::binary);
  Llama2cHeader h{};
  in.read(reinterpret_cast<char*>(h.data()), sizeof(int32_t) * 7);
  const int64_t dim = h[0], hidden = h[1], L = h[2], nh = h[3], nkv = h[4];
  const bool shared = h[5] > 0;
  const int64_t V = shared ? h[5] : -h[5], seq_len = h[6];
  const int64_t hd = dim / nh, kv_dim = nkv * hd, kv_mul = nh / nkv;
  const auto n_floats = static_cast<int64_t>(std::filesystem::file_size(path) / 4) - 7;
  at::Tensor all = at::empty({n_floats}, at::kFloat);
  in.read(static_cast<char*>(all.data_ptr()), static_cast<std::streamsize>(all.nbytes()));
  all = all.to(at::kDouble);

  int64_t off = 0;  // memory_map_weights order
  const auto take = [&](std::vector<int64_t> shape) {
    int64_t n = 1;
    for (int64_t d : shape)
      n *= d;
    at::Tensor t = all.narrow(0, off, n).view(shape);
    off += n;
    return t;
  };
  const at::Tensor emb = take({V, dim}), rms_att = take({L, dim}), wq = take({L, dim, dim}),
                   wk = take({L, kv_dim, dim}), wv = take({L, kv_dim, dim}),
                   wo = take({L, dim, dim}), rms_ffn = take({L, dim}), w1 = take({L, hidden, dim}),
                   w2 = take({L, dim, hidden}), w3 = take({L, hidden, dim}),
                   rms_final = take({dim});
  off += seq_len * hd;  // freq_cis_real + freq_cis_imag, seq_len * hd / 2 each
  const at::Tensor wcls = shared ? emb : take({V, dim});

  const auto rmsnorm = [&](const at::Tensor& x, const at::Tensor& w) {
    const double ss = (x * x).sum().item<double>() / static_cast<double>(dim) + 1e-5;
    return w * (x * (1.0 / std::sqrt(ss)));
  };
  const auto T = static_cast<int64_t>(tokens.size());
  std::vector<at::Tensor> key_cache, value_cache;
  for (int64_t l = 0; l < L; ++l) {
    key_cache.push_back(at::zeros({T, kv_dim}, at::kDouble));
    value_cache.push_back(at::zeros({T, kv_dim}, at::kDouble));
  }
  at::Tensor logits = at::empty({T, V}, at::kDouble);
  for (int64_t pos = 0; pos < T; ++pos) {
    at::Tensor x = emb[tokens[static_cast<size_t>(pos)]].clone();
    for (int64_t l = 0; l < L; ++l) {
      at::Tensor xb = rmsnorm(x, rms_att[l]);
      at::Tensor q = wq[l].mv(xb).contiguous();
      at::Tensor k = wk[l].mv(xb).contiguous();
      const at::Tensor v = wv[l].mv(xb);
      double* qp = q.data_ptr<double>();
      double* kp = k.data_ptr<double>();
      for (int64_t i = 0; i < dim; i += 2) {  // RoPE on interleaved pairs (i, i+1)
        const int64_t head_dim = i % hd;
        const double freq = 1.0 / std::pow(10000.0, static_cast<double>(head_dim) / hd);
        const double val = static_cast<double>(pos) * freq;
        const double fcr = std::cos(val), fci = std::sin(val);
        for (double* vec : {qp, kp}) {
          if (vec == kp && i >= kv_dim)
            continue;  // k is only kv_dim long
          const double v0 = vec[i], v1 = vec[i + 1];
          vec[i] = v0 * fcr - v1 * fci;
          vec[i + 1] = v0 * fci + v1 * fcr;
        }
      }
      key_cache[l][pos].copy_(k);
      value_cache[l][pos].copy_(v);
      xb = at::zeros({dim}, at::kDouble);
      for (int64_t head = 0; head < nh; ++head) {
        const int64_t kvh = head / kv_mul;
        const at::Tensor qh = q.narrow(0, head * hd, hd);
        const at::Tensor keys = key_cache[l].narrow(0, 0, pos + 1).narrow(1, kvh * hd, hd);
        const at::Tensor values = value_cache[l].narrow(0, 0, pos + 1).narrow(1, kvh * hd, hd);
        const at::Tensor att = at::softmax(keys.mv(qh) / std::sqrt(static_cast<double>(hd)), 0);
        xb.narrow(0, head * hd, hd).copy_(values.t().mv(att));
      }
      x = x + wo[l].mv(xb);
      xb = rmsnorm(x, rms_ffn[l]);
      at::Tensor hb = w1[l].mv(xb);
      hb = hb * at::sigmoid(hb) * w3[l].mv(xb);  // silu(w1 x) * w3 x
      x = x + w2[l].mv(hb);
    }
    logits[pos].copy_(wcls.mv(rmsnorm(x, rms_final)));
  }
  return logits;
}

}  // namespace calq::test
