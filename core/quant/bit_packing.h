// Packing integer codes into int32 words, the three ways checkpoints do it (docs/formats.md
// §2.2–2.3, §3.2, §4.4). GPTQ's qweight/qzeros and compressed-tensors' weight_packed are the same
// thing: a little-endian bit stream of b-bit fields (field i at stream bits [b·i, b·i + b), word w
// holding stream bits [32w, 32w + 32)); for b ∈ {2, 4, 8} that is k = 32/b fields per word, LSB
// first, and for b = 3 it is GPTQ's 32-codes-in-3-words layout. AWQ's GEMM layout reorders the 8
// outputs of each word ([0, 2, 4, 6, 1, 3, 5, 7]) before the same 4-bit stream.
#pragma once

#include <cstdint>

#include <ATen/core/Tensor.h>

namespace calq::core {

/// values [rows, n] int32, each in [0, 2^bits) (checked) -> [rows, ceil(n·bits / 32)] int32, the
/// bit stream of each row; the last word is zero-padded. bits in 1..16.
at::Tensor pack_bitstream(const at::Tensor& values, int bits);

/// Inverse of pack_bitstream: words [rows, w] int32 -> [rows, n] int32 fields (n·bits ≤ 32·w).
at::Tensor unpack_bitstream(const at::Tensor& words, int bits, int64_t n);

/// AWQ's nibble order: nibble p of a word holds output 8c + kAwqOrder[p].
constexpr int kAwqOrder[8] = {0, 2, 4, 6, 1, 3, 5, 7};

/// codes [rows, out] int32 in [0, 16), out % 8 == 0 -> [rows, out / 8] int32 (AWQ GEMM qweight
/// or qzeros).
at::Tensor pack_awq(const at::Tensor& codes);

/// Inverse of pack_awq: [rows, out / 8] -> [rows, out].
at::Tensor unpack_awq(const at::Tensor& words);

}  // namespace calq::core
