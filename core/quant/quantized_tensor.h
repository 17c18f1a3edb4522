// A quantized weight in its primary form — integer codes, per-(row, group) scales and integer
// zeros, and g_idx — plus RTN quantization of a whole [out, in] weight (docs/algorithms.md §1.2,
// §0: groups run along the input dimension). GPTQ fills the same struct column by column (§3.1
// steps 1, 3, 9), AWQ after scaling, and the exporters pack it; they never re-derive codes from
// dequantized floats (§1.3).
#pragma once

#include <cstdint>

#include <ATen/core/Tensor.h>

#include "core/quant/grid.h"
#include "core/quant/quantizer.h"

namespace calq::core {

struct QuantizedTensor {
  /// [out, in] in code_range(grid, bits), original column order: int32 as quantizers make them,
  /// or uint8/int8 once compact() (what a run keeps until the export).
  at::Tensor codes;
  at::Tensor scales;  ///< [out, n_groups] float32 (per-tensor: [out, 1], every row equal)
  at::Tensor zeros;  ///< [out, n_groups] int32 code-space zero (gptq_sym: 2^(b−1); ct_asym signed)
  /// [in] int32: the group of each input column, indexing the second dim of scales/zeros.
  /// j / group_size for RTN; GPTQ act-order with dynamic groups makes it non-monotonic (§3.1
  /// step 9). All zeros for per-channel and per-tensor.
  at::Tensor g_idx;
  int bits = 0;
  Grid grid = Grid::GptqAsym;
  Granularity granularity = Granularity::PerChannel;
  int64_t group_size = -1;
  at::ScalarType scale_dtype = at::kFloat;  ///< storage dtype; dequantize() rounds scales to it

  int64_t out_features() const { return codes.size(0); }
  int64_t in_features() const { return codes.size(1); }
  int64_t n_groups() const { return scales.size(1); }

  /// True when group_size does not divide in_features, so one group (the last in processing
  /// order) has in % group_size columns — reports say so; AWQ/packed formats need g | in.
  bool short_last_group() const;

  /// Ŵ[o, i] = s[o, g_idx[i]] · (codes[o, i] − zeros[o, g_idx[i]]) as [out, in] float32, with the
  /// scales first rounded to scale_dtype (§0: predicts the exported model).
  at::Tensor dequantize() const;
  /// The same with an explicit scale storage dtype (kFloat gives the unrounded fit).
  at::Tensor dequantize(at::ScalarType scale_dtype) const;

  /// CALQ_ASSERTs that shapes, dtypes and g_idx/code ranges agree (for producers such as GPTQ).
  void check() const;

  /// Stores the codes in the narrowest of uint8/int8 that the grid's code range fits (every
  /// width calq quantizes to, ≤ 8 bits): a quarter of the int32 bytes, the same values.
  void compact();
};

/// RTN of w [out, in] (any float dtype, finite): group k of a row covers columns
/// [k·g, min((k+1)·g, in)) — the last group is shorter when g does not divide `in`, as the
/// reference GPTQ indexes column // g; PerChannel is one group of all columns; PerTensor one
/// (s, z) for the whole weight. spec.range = Mse applies the §1.4 search per group.
QuantizedTensor quantize_weight(const at::Tensor& w, const QuantSpec& spec);

/// quantize_weight(x, spec).dequantize(): the fake-quantized [out, in] float32 weight.
at::Tensor fake_quantize(const at::Tensor& x, const QuantSpec& spec);

/// g_idx of consecutive groups: [in] int32 with g_idx[j] = j / group_size (all 0 for −1).
at::Tensor sequential_g_idx(int64_t in_features, int64_t group_size);

}  // namespace calq::core
