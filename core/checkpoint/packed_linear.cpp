#include "core/checkpoint/packed_linear.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/error.h"
#include "core/model/weight_source.h"
#include "core/quant/bit_packing.h"

namespace calq::core {
namespace {

bool unsigned_grid(Grid g) {
  return g == Grid::GptqAsym || g == Grid::GptqSym || g == Grid::AwqAsym;
}

/// Codes and zeros on compressed-tensors' signed grid (docs/formats.md §4.3).
int32_t signed_offset(const QuantizedTensor& q) {
  return unsigned_grid(q.grid) ? (int32_t{1} << (q.bits - 1)) : 0;
}

bool monotonic(const at::Tensor& g_idx) {
  if (g_idx.numel() < 2) return true;
  const at::Tensor g = g_idx.to(at::kLong);
  return (g.narrow(0, 1, g.numel() - 1) >= g.narrow(0, 0, g.numel() - 1)).all().item<bool>();
}

int64_t group_size_of(const QuantizedTensor& q) {
  return q.granularity == Granularity::PerGroup ? q.group_size : -1;
}

/// [n_groups, out] -> the stored scale tensor's dtype.
at::Tensor stored_scales(const QuantizedTensor& q) { return q.scales.to(q.scale_dtype); }

at::Tensor load_i32(const WeightSource& s, const std::string& name) {
  const at::Tensor t = s.load(name);
  CALQ_CHECK(t.scalar_type() == at::kInt, "{}: tensor \"{}\" has dtype {}; expected int32",
             s.path(), name, c10::toString(t.scalar_type()));
  return t;
}

void expect_shape(const WeightSource& s, const std::string& name, const at::Tensor& t,
                  std::vector<int64_t> shape) {
  CALQ_CHECK(t.sizes().vec() == shape, "{}: tensor \"{}\" has shape [{}]; expected [{}]", s.path(),
             name, fmt::join(t.sizes(), ", "), fmt::join(shape, ", "));
}

Grid reader_grid(const PackedLayout& l) {
  if (l.format == SaveFormat::CompressedTensors) return l.sym ? Grid::CtSym : Grid::CtAsym;
  if (l.format == SaveFormat::Awq) return Grid::AwqAsym;
  return l.sym ? Grid::GptqSym : Grid::GptqAsym;
}

QuantizedTensor reader_tensor(const PackedLayout& l, at::Tensor codes, at::Tensor scales,
                              at::Tensor zeros, at::Tensor g_idx) {
  QuantizedTensor q;
  q.bits = l.bits;
  q.grid = reader_grid(l);
  q.group_size = l.group_size;
  q.granularity = l.per_tensor       ? Granularity::PerTensor
                  : l.group_size > 0 ? Granularity::PerGroup
                                     : Granularity::PerChannel;
  q.scale_dtype = scales.scalar_type();
  q.codes = std::move(codes);
  q.scales = scales.to(at::kFloat).contiguous();
  q.zeros = std::move(zeros);
  q.g_idx = std::move(g_idx);
  return q;
}

}  // namespace

PackedLayout layout_for(SaveFormat format, const QuantizedTensor& q,
                        const std::optional<ActQuantSpec>& activations) {
  PackedLayout l;
  l.format = format;
  l.bits = q.bits;
  l.group_size = group_size_of(q);
  l.per_tensor = q.granularity == Granularity::PerTensor && format == SaveFormat::CompressedTensors;
  l.sym = is_symmetric(q.grid);
  l.act_order = q.granularity == Granularity::PerGroup && !monotonic(q.g_idx);
  if (format == SaveFormat::CompressedTensors) l.activations = activations;
  return l;
}

std::string shape_reason(const PackedLayout& l, int64_t in, int64_t out) {
  if (l.group_size > 0 && in % l.group_size != 0)
    return fmt::format("group size {} does not divide in_features {}", l.group_size, in);
  switch (l.format) {
    case SaveFormat::Gptq: {
      if (in % 32 != 0) return fmt::format("in_features {} is not a multiple of 32", in);
      const int64_t words_of = l.bits == 3 ? 32 : 32 / l.bits;
      if (out % words_of != 0)
        return fmt::format("out_features {} is not a multiple of {} (qzeros packing)", out, words_of);
      return "";
    }
    case SaveFormat::Awq:
      if (out % 8 != 0) return fmt::format("out_features {} is not a multiple of 8", out);
      return "";
    case SaveFormat::CompressedTensors:
    case SaveFormat::Fake:
      return "";
  }
  return "";
}

std::string unrepresentable_reason(const PackedLayout& l, const QuantizedTensor& q) {
  const int64_t out = q.out_features(), in = q.in_features();
  if (q.bits != l.bits || group_size_of(q) != l.group_size || is_symmetric(q.grid) != l.sym)
    return fmt::format("{} w{} g{} differs from the checkpoint's w{} g{} {} (one layout per "
                       "checkpoint)", grid_name(q.grid), q.bits, group_size_of(q), l.bits,
                       l.group_size, l.sym ? "sym" : "asym");
  if (q.short_last_group())
    return fmt::format("group size {} does not divide in_features {}", q.group_size, in);
  switch (l.format) {
    case SaveFormat::Gptq: {
      if (!unsigned_grid(q.grid))
        return fmt::format("grid {} has signed codes; gptq stores gptq_asym, gptq_sym or awq_asym",
                           grid_name(q.grid));
      if (q.scale_dtype != at::kHalf) return "gptq stores float16 scales; expected scale_dtype: float16";
      if (const std::string why = shape_reason(l, in, out); !why.empty()) return why;
      if (!l.gptq_v2) {
        const int64_t zero = (q.zeros == 0).sum().item<int64_t>();
        if (zero > 0)
          return fmt::format("{} groups have zero point 0, which GPTQ v1 stores as −1 and corrupts "
                             "(docs/formats.md §2.4); use compressed-tensors, or a symmetric grid",
                             zero);
      }
      return "";
    }
    case SaveFormat::Awq:
      if (l.bits != 4) return fmt::format("awq stores 4-bit weights, not {}-bit", l.bits);
      if (q.grid != Grid::AwqAsym && q.grid != Grid::GptqAsym)
        return fmt::format("awq stores asymmetric unsigned grids (awq_asym, gptq_asym), not {}",
                           grid_name(q.grid));
      if (q.granularity != Granularity::PerGroup)
        return "awq needs groups (group_size > 0); per-channel fails in AutoAWQ";
      if (l.act_order) return "awq has no g_idx: act-order groups cannot be stored";
      if (q.scale_dtype != at::kHalf) return "awq stores float16 scales; expected scale_dtype: float16";
      return shape_reason(l, in, out);
    case SaveFormat::CompressedTensors:
      // compressed-tensors 0.19 (requirements.txt) has no g_idx: ActivationOrdering "group" is
      // refused at load ("actorder='group' has been removed", quant_args.py); only "weight"
      // (act-order with static groups, the same stored format as none) remains.
      if (l.act_order)
        return "compressed-tensors (>= 0.19) dropped actorder \"group\" (g_idx): act-order groups "
               "cannot be stored; use gptq's static_groups: true, or save.format gptq";
      if (q.grid == Grid::AwqAsym || q.grid == Grid::GptqAsym || q.grid == Grid::CtAsym) {
        if (l.activations) return "int-quantized with asymmetric weights is not written by calq";
      }
      return "";
    case SaveFormat::Fake:
      return "";
  }
  return "";
}

NamedTensors pack_linear(const PackedLayout& l, const std::string& p, const QuantizedTensor& q) {
  const at::Tensor codes = q.codes.to(at::kCPU).to(at::kInt);
  const at::Tensor zeros = q.zeros.to(at::kCPU).to(at::kInt);
  NamedTensors t;
  switch (l.format) {
    case SaveFormat::Gptq: {
      // qweight packs along the input dim: row r holds inputs r·k…; pack each output's codes.
      t.emplace_back(p + ".qweight", pack_bitstream(codes, l.bits).t().contiguous());
      const at::Tensor stored_zeros = l.gptq_v2 ? zeros : zeros - 1;  // v1 stores z − 1
      t.emplace_back(p + ".qzeros", pack_bitstream(stored_zeros.t().contiguous(), l.bits));
      t.emplace_back(p + ".scales", stored_scales(q).t().contiguous());
      t.emplace_back(p + ".g_idx", q.g_idx.to(at::kCPU).to(at::kInt).contiguous());
      return t;
    }
    case SaveFormat::Awq:
      t.emplace_back(p + ".qweight", pack_awq(codes.t().contiguous()));
      t.emplace_back(p + ".qzeros", pack_awq(zeros.t().contiguous()));
      t.emplace_back(p + ".scales", stored_scales(q).t().contiguous());
      return t;
    case SaveFormat::CompressedTensors: {
      const int32_t offset = signed_offset(q);
      const at::Tensor s_codes = codes - offset;  // signed, in [−2^(b−1), 2^(b−1) − 1]
      const at::Tensor s_zeros = zeros - offset;
      const at::Tensor scale = l.per_tensor ? stored_scales(q).narrow(0, 0, 1).reshape({1})
                                            : stored_scales(q).contiguous();
      if (l.ct_format() == "pack-quantized") {
        const int32_t half = int32_t{1} << (l.bits - 1);
        t.emplace_back(p + ".weight_packed", pack_bitstream(s_codes + half, l.bits));
        t.emplace_back(p + ".weight_scale", scale);
        if (!l.sym) {
          // Packed along the output dim: [ceil(out / k), n_groups].
          t.emplace_back(p + ".weight_zero_point",
                         pack_bitstream((s_zeros + half).t().contiguous(), l.bits).t().contiguous());
        }
        t.emplace_back(p + ".weight_shape",
                       at::tensor(std::vector<int64_t>{q.out_features(), q.in_features()}, at::kLong));
      } else {
        t.emplace_back(p + ".weight", s_codes.to(at::kChar));
        t.emplace_back(p + ".weight_scale", scale);
        if (!l.sym) t.emplace_back(p + ".weight_zero_point", s_zeros.to(at::kChar));
      }
      if (l.act_order) t.emplace_back(p + ".weight_g_idx", q.g_idx.to(at::kCPU).to(at::kInt));
      return t;
    }
    case SaveFormat::Fake:
      break;
  }
  throw InternalError("pack_linear: fake is not a packed format");
}

bool has_packed_linear(const PackedLayout& l, const WeightSource& s, const std::string& p) {
  switch (l.format) {
    case SaveFormat::Gptq:
    case SaveFormat::Awq:
      return s.contains(p + ".qweight");
    case SaveFormat::CompressedTensors:
      return s.contains(p + ".weight_scale");
    case SaveFormat::Fake:
      return false;
  }
  return false;
}

QuantizedTensor unpack_linear(const PackedLayout& l, const WeightSource& s, const std::string& p) {
  switch (l.format) {
    case SaveFormat::Gptq: {
      const at::Tensor qweight = load_i32(s, p + ".qweight");
      // Without g_idx (AutoRound's own format) the groups are sequential and qweight's rows
      // give in_features: each row holds 32 / bits inputs (3-bit: 32 inputs per 3 rows).
      const bool stored = l.g_idx_stored || s.contains(p + ".g_idx");
      const int64_t in = stored ? s.shape(p + ".g_idx").at(0) : qweight.size(0) * 32 / l.bits;
      const at::Tensor g_idx = stored ? load_i32(s, p + ".g_idx")
                                      : sequential_g_idx(in, l.group_size).to(at::kInt);
      const int64_t out = qweight.size(1);
      const at::Tensor scales = s.load(p + ".scales");  // [groups, out]
      const int64_t groups = scales.size(0);
      expect_shape(s, p + ".qweight", qweight, {in * l.bits / 32, out});
      const at::Tensor qzeros = load_i32(s, p + ".qzeros");
      expect_shape(s, p + ".qzeros", qzeros, {groups, (out * l.bits + 31) / 32});
      const at::Tensor codes = unpack_bitstream(qweight.t().contiguous(), l.bits, in);
      at::Tensor zeros = unpack_bitstream(qzeros, l.bits, out).t().contiguous();
      if (!l.gptq_v2) zeros = zeros + 1;
      const int64_t bad = (g_idx < 0).logical_or(g_idx >= groups).sum().item<int64_t>();
      CALQ_CHECK(bad == 0, "{}: tensor \"{}.g_idx\": {} entries outside [0, {})", s.path(), p, bad,
                 groups);
      return reader_tensor(l, codes, scales.t(), zeros, g_idx);
    }
    case SaveFormat::Awq: {
      const at::Tensor qweight = load_i32(s, p + ".qweight");  // [in, out / 8]
      const at::Tensor scales = s.load(p + ".scales");          // [in / g, out]
      const int64_t in = qweight.size(0), out = qweight.size(1) * 8;
      CALQ_CHECK(l.group_size > 0 && in % l.group_size == 0,
                 "{}: \"{}\": group size {} does not divide in_features {}", s.path(), p,
                 l.group_size, in);
      expect_shape(s, p + ".scales", scales, {in / l.group_size, out});
      const at::Tensor qzeros = load_i32(s, p + ".qzeros");
      expect_shape(s, p + ".qzeros", qzeros, {in / l.group_size, out / 8});
      const at::Tensor codes = unpack_awq(qweight).t().contiguous();
      const at::Tensor zeros = unpack_awq(qzeros).t().contiguous();
      return reader_tensor(l, codes, scales.t(), zeros, sequential_g_idx(in, l.group_size));
    }
    case SaveFormat::CompressedTensors: {
      at::Tensor codes;
      int64_t out = 0, in = 0;
      if (l.ct_format() == "pack-quantized") {
        const at::Tensor shape = s.load(p + ".weight_shape").to(at::kLong);
        CALQ_CHECK(shape.numel() == 2, "{}: tensor \"{}.weight_shape\" has {} values; expected 2",
                   s.path(), p, shape.numel());
        out = shape[0].item<int64_t>();
        in = shape[1].item<int64_t>();
        const at::Tensor packed = load_i32(s, p + ".weight_packed");
        expect_shape(s, p + ".weight_packed", packed, {out, (in * l.bits + 31) / 32});
        codes = unpack_bitstream(packed, l.bits, in) - (int32_t{1} << (l.bits - 1));
      } else {
        const at::Tensor w = s.load(p + ".weight");
        CALQ_CHECK(w.scalar_type() == at::kChar && w.dim() == 2,
                   "{}: tensor \"{}.weight\" is {} {}-D; expected int8 [out, in]", s.path(), p,
                   c10::toString(w.scalar_type()), w.dim());
        out = w.size(0);
        in = w.size(1);
        codes = w.to(at::kInt);
      }
      at::Tensor scales = s.load(p + ".weight_scale");
      if (l.per_tensor) scales = scales.reshape({1, 1}).expand({out, 1}).contiguous();
      const int64_t groups = scales.size(-1);
      expect_shape(s, p + ".weight_scale", scales, {out, groups});
      at::Tensor zeros = at::zeros({out, groups}, at::kInt);
      if (!l.sym) {
        if (l.ct_format() == "pack-quantized") {
          const at::Tensor zp = load_i32(s, p + ".weight_zero_point");  // [ceil(out / k), groups]
          zeros = unpack_bitstream(zp.t().contiguous(), l.bits, out).t().contiguous() -
                  (int32_t{1} << (l.bits - 1));
        } else {
          zeros = s.load(p + ".weight_zero_point").to(at::kInt).reshape({out, groups});
        }
      }
      at::Tensor g_idx = l.act_order ? load_i32(s, p + ".weight_g_idx")
                                     : sequential_g_idx(in, l.group_size > 0 ? l.group_size : -1);
      return reader_tensor(l, codes, scales, zeros, g_idx);
    }
    case SaveFormat::Fake:
      break;
  }
  throw InternalError("unpack_linear: fake is not a packed format");
}

}  // namespace calq::core
