#include "core/quant/bit_packing.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <vector>

#include "core/error.h"

namespace calq::core {

at::Tensor pack_bitstream(const at::Tensor& values, int bits) {
  CALQ_ASSERT(bits >= 1 && bits <= 16, "pack_bitstream: {} bits", bits);
  CALQ_ASSERT(values.dim() == 2, "pack_bitstream: values must be [rows, n]");
  const at::Tensor v = values.to(at::kCPU).to(at::kInt).contiguous();
  const int64_t rows = v.size(0), n = v.size(1);
  const int64_t n_words = (n * bits + 31) / 32;
  if (n > 0) {
    const int64_t lo = v.min().item<int64_t>(), hi = v.max().item<int64_t>();
    CALQ_ASSERT(lo >= 0 && hi < (int64_t{1} << bits),
                "pack_bitstream: values in [{}, {}] do not fit {} unsigned bits", lo, hi, bits);
  }
  at::Tensor out = at::zeros({rows, n_words}, at::kInt);
  const int32_t* src = v.data_ptr<int32_t>();
  auto* dst = reinterpret_cast<uint32_t*>(out.data_ptr<int32_t>());
  at::parallel_for(0, rows, 16, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int32_t* in = src + r * n;
      uint32_t* words = dst + r * n_words;
      uint64_t acc = 0;  // pending stream bits, LSB first
      int filled = 0;
      int64_t w = 0;
      for (int64_t i = 0; i < n; ++i) {
        acc |= static_cast<uint64_t>(static_cast<uint32_t>(in[i])) << filled;
        filled += bits;
        if (filled >= 32) {
          words[w++] = static_cast<uint32_t>(acc);
          acc >>= 32;
          filled -= 32;
        }
      }
      if (filled > 0) words[w] = static_cast<uint32_t>(acc);
    }
  });
  return out;
}

at::Tensor unpack_bitstream(const at::Tensor& words, int bits, int64_t n) {
  CALQ_ASSERT(bits >= 1 && bits <= 16, "unpack_bitstream: {} bits", bits);
  CALQ_ASSERT(words.dim() == 2, "unpack_bitstream: words must be [rows, w]");
  const at::Tensor w = words.to(at::kCPU).to(at::kInt).contiguous();
  const int64_t rows = w.size(0), n_words = w.size(1);
  CALQ_ASSERT(n * bits <= 32 * n_words, "unpack_bitstream: {} fields of {} bits need more than {} words",
              n, bits, n_words);
  at::Tensor out = at::empty({rows, n}, at::kInt);
  const auto* src = reinterpret_cast<const uint32_t*>(w.data_ptr<int32_t>());
  int32_t* dst = out.data_ptr<int32_t>();
  const uint64_t mask = (uint64_t{1} << bits) - 1;
  at::parallel_for(0, rows, 16, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const uint32_t* in = src + r * n_words;
      int32_t* values = dst + r * n;
      uint64_t acc = 0;
      int filled = 0;
      int64_t next = 0;
      for (int64_t i = 0; i < n; ++i) {
        if (filled < bits) {
          acc |= static_cast<uint64_t>(in[next++]) << filled;
          filled += 32;
        }
        values[i] = static_cast<int32_t>(acc & mask);
        acc >>= bits;
        filled -= bits;
      }
    }
  });
  return out;
}

namespace {

/// Column permutation within each group of 8: position p of a word's stream takes column
/// 8c + kAwqOrder[p].
at::Tensor awq_gather_index(int64_t out) {
  std::vector<int64_t> index(static_cast<size_t>(out));
  for (int64_t c = 0; c < out; ++c) index[static_cast<size_t>(c)] = (c / 8) * 8 + kAwqOrder[c % 8];
  return at::tensor(index, at::kLong);
}

}  // namespace

at::Tensor pack_awq(const at::Tensor& codes) {
  CALQ_ASSERT(codes.dim() == 2 && codes.size(1) % 8 == 0,
              "pack_awq: codes must be [rows, out] with out % 8 == 0");
  const at::Tensor ordered = codes.to(at::kCPU).index_select(1, awq_gather_index(codes.size(1)));
  return pack_bitstream(ordered, 4);
}

at::Tensor unpack_awq(const at::Tensor& words) {
  CALQ_ASSERT(words.dim() == 2, "unpack_awq: words must be [rows, out / 8]");
  const int64_t out = words.size(1) * 8;
  const at::Tensor ordered = unpack_bitstream(words, 4, out);
  // ordered[:, p] = codes[:, gather[p]]  =>  codes = ordered scattered back.
  return at::empty_like(ordered).index_copy_(1, awq_gather_index(out), ordered);
}

}  // namespace calq::core
