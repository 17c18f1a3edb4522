#include "core/quant/quantized_tensor.h"

#include <algorithm>
#include <vector>

#include <ATen/ATen.h>

#include "core/error.h"

namespace calq::core {

at::Tensor sequential_g_idx(int64_t in_features, int64_t group_size) {
  CALQ_ASSERT(in_features >= 0 && (group_size == -1 || group_size > 0),
              "sequential_g_idx: in {} group_size {}", in_features, group_size);
  at::Tensor g_idx = at::empty({in_features}, at::kInt);
  int32_t* out = g_idx.data_ptr<int32_t>();
  for (int64_t j = 0; j < in_features; ++j)
    out[j] = group_size == -1 ? 0 : static_cast<int32_t>(j / group_size);
  return g_idx;
}

bool QuantizedTensor::short_last_group() const {
  return granularity == Granularity::PerGroup && in_features() % group_size != 0;
}

at::Tensor QuantizedTensor::dequantize() const {
  return dequantize(scale_dtype);
}

at::Tensor QuantizedTensor::dequantize(at::ScalarType dtype) const {
  check();
  // Gather each column's group params through g_idx, so act-order's non-monotonic map works.
  // Row blocks bound the gathered [rows, in] params and temporaries to a few MB: whole, a 7B
  // down_proj's would be four 180 MB tensors beside the result.
  const at::Tensor index = g_idx.to(codes.device()).to(at::kLong);
  const at::Tensor s_all = round_scales(scales, dtype);
  at::Tensor out = at::empty(codes.sizes(), codes.options().dtype(at::kFloat));
  const int64_t rows = codes.size(0);
  const int64_t block = std::max<int64_t>(1, (int64_t{1} << 20) / std::max<int64_t>(1, codes.size(1)));
  for (int64_t begin = 0; begin < rows; begin += block) {
    const int64_t n = std::min(block, rows - begin);
    const at::Tensor s = s_all.narrow(0, begin, n).index_select(1, index);
    const at::Tensor z = zeros.narrow(0, begin, n).index_select(1, index);
    out.narrow(0, begin, n).copy_(core::dequantize(codes.narrow(0, begin, n), s, z));
  }
  return out;
}

void QuantizedTensor::check() const {
  CALQ_ASSERT(codes.defined() && scales.defined() && zeros.defined() && g_idx.defined(),
              "QuantizedTensor: undefined member tensor");
  CALQ_ASSERT(codes.dim() == 2 && (codes.scalar_type() == at::kInt || codes.scalar_type() == at::kByte ||
                                   codes.scalar_type() == at::kChar),
              "codes must be 2-d int32 (or uint8/int8 when compact)");
  CALQ_ASSERT(scales.dim() == 2 && scales.scalar_type() == at::kFloat &&
                  scales.size(0) == codes.size(0) && scales.size(1) >= 1,
              "scales must be [out, n_groups] float32");
  CALQ_ASSERT(zeros.sizes() == scales.sizes() && zeros.scalar_type() == at::kInt,
              "zeros must be int32 shaped like scales");
  CALQ_ASSERT(g_idx.dim() == 1 && g_idx.size(0) == codes.size(1) && g_idx.scalar_type() == at::kInt,
              "g_idx must be [in] int32");
  CALQ_ASSERT(granularity != Granularity::PerGroup || group_size > 0,
              "per-group QuantizedTensor with group_size {}", group_size);
  if (g_idx.numel() > 0) {
    CALQ_ASSERT(g_idx.min().item<int32_t>() >= 0 && g_idx.max().item<int32_t>() < n_groups(),
                "g_idx out of [0, {})", n_groups());
  }
  const CodeRange cr = code_range(grid, bits);
  if (codes.numel() > 0) {
    CALQ_ASSERT(codes.min().item<int32_t>() >= cr.qmin && codes.max().item<int32_t>() <= cr.qmax,
                "codes outside the {} {}-bit range [{}, {}]", grid_name(grid), bits, cr.qmin,
                cr.qmax);
  }
}

void QuantizedTensor::compact() {
  const CodeRange cr = code_range(grid, bits);
  if (cr.qmin >= 0 && cr.qmax <= 255) {
    codes = codes.to(at::kByte);
  } else if (cr.qmin >= -128 && cr.qmax <= 127) {
    codes = codes.to(at::kChar);
  }
}

QuantizedTensor quantize_weight(const at::Tensor& w, const QuantSpec& spec) {
  validate(spec);
  CALQ_CHECK(w.dim() == 2 && w.numel() > 0 && at::isFloatingType(w.scalar_type()),
             "cannot quantize a {}-d {} weight with {} elements; expected a non-empty 2-d "
             "[out, in] floating-point tensor",
             w.dim(), c10::toString(w.scalar_type()), w.numel());
  const at::Tensor x = w.to(at::kFloat).contiguous();
  const int64_t out = x.size(0);
  const int64_t in = x.size(1);

  QuantizedTensor q;
  q.bits = spec.bits;
  q.grid = spec.grid;
  q.granularity = spec.granularity;
  q.group_size = spec.group_size;
  q.scale_dtype = spec.scale_dtype;

  switch (spec.granularity) {
    case Granularity::PerTensor:
    case Granularity::PerChannel: {
      const QuantParams p = fit_params(x, spec);  // [out]
      q.scales = p.scale.unsqueeze(1);
      q.zeros = p.zero.unsqueeze(1);
      q.g_idx = sequential_g_idx(in, -1).to(x.device());
      break;
    }
    case Granularity::PerGroup: {
      // Full groups fitted at once on a [out, n_full, g] view, then the short tail (if any) —
      // the same params as fitting W[:, k·g : (k+1)·g] one group at a time (gptq.py).
      const int64_t g = spec.group_size;
      const int64_t n_full = in / g;
      const int64_t tail = in % g;
      std::vector<at::Tensor> scales;
      std::vector<at::Tensor> zeros;
      if (n_full > 0) {
        const QuantParams p =
            fit_params_last_dim(x.narrow(1, 0, n_full * g).reshape({out, n_full, g}), spec);
        scales.push_back(p.scale);
        zeros.push_back(p.zero);
      }
      if (tail > 0) {
        const QuantParams p = fit_params_last_dim(x.narrow(1, n_full * g, tail), spec);
        scales.push_back(p.scale.unsqueeze(1));
        zeros.push_back(p.zero.unsqueeze(1));
      }
      q.scales = at::cat(scales, 1).contiguous();
      q.zeros = at::cat(zeros, 1).contiguous();
      q.g_idx = sequential_g_idx(in, g).to(x.device());
      break;
    }
  }
  const at::Tensor index = q.g_idx.to(at::kLong);
  q.codes = quantize_codes(x, q.scales.index_select(1, index), q.zeros.index_select(1, index), spec)
                .contiguous();
  return q;
}

at::Tensor fake_quantize(const at::Tensor& x, const QuantSpec& spec) {
  return quantize_weight(x, spec).dequantize();
}

}  // namespace calq::core
