#include "core/quant/quantizer.h"

#include <cmath>
#include <limits>
#include <utility>

#include <ATen/ATen.h>
#include <fmt/format.h>

#include "core/error.h"

namespace calq::core {
namespace {

// The range (lo, hi) a grid derives from the data, before any shrinking (§1.1 "range source").
// Symmetric grids return (−amax, amax) so the mse search can scale both ends alike.
struct Range {
  at::Tensor lo;
  at::Tensor hi;
};

// A float32 0-dim tensor on x's device. Dividing by it (rather than by a C++ number) keeps the
// division a true division on every device: CUDA turns `tensor / scalar` into a multiply by
// the reciprocal (see the header), but never `tensor / tensor`.
at::Tensor constant_like(const at::Tensor& x, double value) {
  return at::scalar_tensor(value, x.options().dtype(at::kFloat));
}

Range derive_range(const at::Tensor& x, const QuantSpec& spec) {
  const at::Tensor mn = at::amin(x, -1);
  const at::Tensor mx = at::amax(x, -1);
  CALQ_CHECK(at::isfinite(mn).all().item<bool>() && at::isfinite(mx).all().item<bool>(),
             "cannot quantize a tensor that holds NaN or Inf; expected finite values");
  const at::Tensor zero = at::zeros_like(mn);
  switch (spec.grid) {
    case Grid::GptqAsym:
    case Grid::GptqSym: {
      // gptq quant.py find_params: include 0, symmetric adjust, then the all-zero fix (in order).
      at::Tensor lo = at::minimum(mn, zero);
      at::Tensor hi = at::maximum(mx, zero);
      if (spec.grid == Grid::GptqSym) {
        hi = at::maximum(at::abs(lo), hi);
        lo =
            at::where(lo < 0, -hi, lo);  // lo := −amax only if lo < 0 (an all-positive row keeps 0)
      }
      const at::Tensor dead = at::logical_and(lo == 0, hi == 0);
      lo = at::where(dead, at::full_like(lo, -1.0), lo);
      hi = at::where(dead, at::full_like(hi, 1.0), hi);
      return {lo, hi};
    }
    case Grid::CtSym: {
      // calculate_qparams: min/max forced to include 0, then max(|min|, |max|).
      const at::Tensor amax = at::maximum(at::abs(at::minimum(mn, zero)), at::maximum(mx, zero));
      return {-amax, amax};
    }
    case Grid::CtAsym:
      return {at::minimum(mn, zero), at::maximum(mx, zero)};
    case Grid::AwqAsym:
      return {mn, mx};  // raw min/max: 0 is not forced into the range
    case Grid::Absmax: {
      const at::Tensor amax = at::maximum(at::abs(mn), at::abs(mx));  // = max |x|
      return {-amax, amax};
    }
  }
  CALQ_ASSERT(false, "bad Grid value {}", static_cast<int>(spec.grid));
  return {};
}

// (s, z) from a range, exactly as each reference's formula and op order (§1.1). z is returned
// as float32 holding an integer, as the references keep it.
std::pair<at::Tensor, at::Tensor> params_from_range(const Range& r, const QuantSpec& spec) {
  const CodeRange cr = code_range(spec.grid, spec.bits);
  const double qmax_u = std::ldexp(1.0, spec.bits) - 1;  // 2^b − 1
  const at::Tensor& lo = r.lo;
  const at::Tensor& hi = r.hi;
  // compressed-tensors: clamp(scales, min=torch.finfo(torch.float32).eps).
  constexpr double kCtEps = std::numeric_limits<float>::epsilon();
  constexpr double kAwqMinRange = 1e-5;  // llm-awq: (max - min).clamp(min=1e-5)
  switch (spec.grid) {
    case Grid::GptqAsym: {
      const at::Tensor s = (hi - lo) / constant_like(hi, qmax_u);
      return {s, at::round(-lo / s)};
    }
    case Grid::GptqSym: {
      const at::Tensor s = (hi - lo) / constant_like(hi, qmax_u);
      return {s, at::full_like(s, (qmax_u + 1) / 2)};  // (maxq + 1) / 2, not rounded
    }
    case Grid::CtSym: {
      // max_val_pos / (float(bit_range) / 2), bit_range = qmax − qmin: amax / 7.5 at 4 bits.
      const double half_range = static_cast<double>(cr.qmax - cr.qmin) / 2;
      const at::Tensor s = at::clamp_min(hi / constant_like(hi, half_range), kCtEps);
      return {s, at::zeros_like(s)};
    }
    case Grid::CtAsym: {
      const at::Tensor s = at::clamp_min((hi - lo) / constant_like(hi, cr.qmax - cr.qmin), kCtEps);
      // bit_min - (min_vals / scales), clamped, then rounded (signed zero).
      const at::Tensor z =
          at::round(at::clamp(constant_like(lo, cr.qmin) - lo / s, cr.qmin, cr.qmax));
      return {s, z};
    }
    case Grid::AwqAsym: {
      const at::Tensor s = at::clamp_min(hi - lo, kAwqMinRange) / constant_like(hi, qmax_u);
      return {s, at::clamp(-at::round(lo / s), 0, qmax_u)};
    }
    case Grid::Absmax: {
      // smoothquant: scales.clamp_(min=1e-5).div_(q_max), q_max = 2^(b-1) − 1.
      const at::Tensor s = at::clamp_min(hi, kAwqMinRange) / constant_like(hi, cr.qmax);
      return {s, at::zeros_like(s)};
    }
  }
  CALQ_ASSERT(false, "bad Grid value {}", static_cast<int>(spec.grid));
  return {};
}

// scale/zero of shape [...] against x [..., n] get a trailing dim; other shapes broadcast as is.
at::Tensor align(const at::Tensor& param, const at::Tensor& x) {
  if (param.dim() == x.dim() - 1)
    return param.unsqueeze(-1);
  return param;
}

// The float32 codes, before the int32 cast (the mse search dequantizes them directly).
at::Tensor codes_f32(const at::Tensor& x,
                     const at::Tensor& s,
                     const at::Tensor& z,
                     const QuantSpec& spec) {
  const CodeRange cr = code_range(spec.grid, spec.bits);
  const at::Tensor scaled = x / s;
  if (spec.grid == Grid::CtSym || spec.grid == Grid::CtAsym)
    return at::round(at::clamp(scaled + z, cr.qmin, cr.qmax));  // ct forward.py _quantize
  return at::clamp(at::round(scaled) + z, cr.qmin, cr.qmax);
}

}  // namespace

void validate(const QuantSpec& spec) {
  CALQ_CHECK(spec.bits == 2 || spec.bits == 3 || spec.bits == 4 || spec.bits == 8,
             "quantization bits: {} is not supported for the integer grid {}; expected 2, 3, 4 "
             "or 8",
             spec.bits, grid_name(spec.grid));
  if (spec.granularity == Granularity::PerGroup) {
    CALQ_CHECK(spec.group_size > 0,
               "group_size: {} is not a valid group size; expected a positive number of input "
               "columns, or -1 for per-channel",
               spec.group_size);
  } else {
    CALQ_CHECK(spec.group_size == -1,
               "group_size: {} given with {} quantization; expected -1 (groups need per-group "
               "granularity)",
               spec.group_size,
               spec.granularity == Granularity::PerTensor ? "per-tensor" : "per-channel");
  }
  if (spec.range == RangeSearch::Mse) {
    CALQ_CHECK(spec.mse.norm > 0 && spec.mse.grid > 0 && spec.mse.max_shrink > 0 &&
                   spec.mse.max_shrink <= 1,
               "mse range search: norm {}, grid {}, max_shrink {}; expected norm > 0, grid > 0 "
               "and 0 < max_shrink <= 1",
               spec.mse.norm, spec.mse.grid, spec.mse.max_shrink);
  }
  CALQ_CHECK(spec.scale_dtype == at::kFloat || spec.scale_dtype == at::kHalf ||
                 spec.scale_dtype == at::kBFloat16,
             "scale dtype {}: not a scale storage type; expected float32, float16 or bfloat16",
             c10::toString(spec.scale_dtype));
}

QuantSpec weight_spec(int bits, Grid grid, int64_t group_size) {
  CALQ_CHECK(group_size == -1 || group_size > 0,
             "group_size: {} is not a valid group size; expected a positive number of input "
             "columns, or -1 for per-channel",
             group_size);
  QuantSpec spec;
  spec.bits = bits;
  spec.grid = grid;
  spec.granularity = group_size == -1 ? Granularity::PerChannel : Granularity::PerGroup;
  spec.group_size = group_size;
  validate(spec);
  return spec;
}

namespace {
constexpr std::pair<Granularity, std::string_view> kGranularityNames[] = {
    {Granularity::PerTensor, "per_tensor"},
    {Granularity::PerChannel, "per_channel"},
    {Granularity::PerGroup, "per_group"},
};
}  // namespace

std::string_view granularity_name(Granularity granularity) {
  for (const auto& [g, name] : kGranularityNames)
    if (g == granularity) return name;
  fail("granularity {} has no name", static_cast<int>(granularity));
}

Granularity parse_granularity(std::string_view name, std::string_view where) {
  for (const auto& [g, n] : kGranularityNames)
    if (n == name) return g;
  fail("{}: granularity \"{}\"; expected per_tensor, per_channel or per_group", where, name);
}

std::string describe(const QuantSpec& spec) {
  std::string granularity = "per-channel";
  if (spec.granularity == Granularity::PerTensor)
    granularity = "per-tensor";
  else if (spec.granularity == Granularity::PerGroup)
    granularity = fmt::format("g{}", spec.group_size);
  return fmt::format("{} w{} {}{}", grid_name(spec.grid), spec.bits, granularity,
                     spec.range == RangeSearch::Mse ? " mse" : "");
}

QuantParams fit_params_last_dim(const at::Tensor& x_in, const QuantSpec& spec) {
  validate(spec);
  CALQ_CHECK(x_in.dim() >= 1 && x_in.size(-1) > 0 && at::isFloatingType(x_in.scalar_type()),
             "cannot fit quantization params of a {}-d {} tensor with {} elements; expected a "
             "floating-point tensor with a non-empty last dimension",
             x_in.dim(), c10::toString(x_in.scalar_type()), x_in.numel());
  const at::Tensor x = x_in.to(at::kFloat);
  const Range range = derive_range(x, spec);
  auto [scale, zero] = params_from_range(range, spec);

  if (spec.range == RangeSearch::Mse) {
    // gptq quant.py find_params(mse=True): shrink both ends by p, keep the smallest error with a
    // strict `<`, so p = 1 (i = 0) wins ties. Candidate range p·lo, p·hi is fed through the
    // grid's own formula; for the gptq grids that is the reference, for the others the same
    // search applied to their range (a calq extension).
    at::Tensor best = at::full_like(scale, std::numeric_limits<float>::infinity());
    const int n_candidates = static_cast<int>(spec.mse.max_shrink * spec.mse.grid);
    for (int i = 0; i < n_candidates; ++i) {
      const double p = 1.0 - static_cast<double>(i) / spec.mse.grid;  // Python float
      // p * xmin: torch casts the Python float to float32 and multiplies in float32.
      const at::Tensor pf = constant_like(x, static_cast<float>(p));
      const Range shrunk{range.lo * pf, range.hi * pf};
      auto [s1, z1] = params_from_range(shrunk, spec);
      const at::Tensor s1b = s1.unsqueeze(-1);
      const at::Tensor z1b = z1.unsqueeze(-1);
      const at::Tensor q = s1b * (codes_f32(x, s1b, z1b, spec) - z1b);
      const at::Tensor err = (q - x).abs_().pow_(spec.mse.norm).sum(-1);
      const at::Tensor better = err < best;
      best = at::where(better, err, best);
      scale = at::where(better, s1, scale);
      zero = at::where(better, z1, zero);
    }
  }
  // A positive range so small that range/qmax underflows (|x| ~ 1e-44) would give z = NaN.
  CALQ_CHECK(at::gt(scale, 0).all().item<bool>(),
             "quantization range underflows float32 (scale 0); expected values above ~1e-37");
  return {scale.contiguous(), zero.to(at::kInt).contiguous()};
}

QuantParams fit_params(const at::Tensor& x, const QuantSpec& spec) {
  CALQ_CHECK(x.dim() == 2, "fit_params expects a 2-d [rows, cols] tensor; got {} dims", x.dim());
  if (spec.granularity != Granularity::PerTensor)
    return fit_params_last_dim(x, spec);
  QuantParams one = fit_params_last_dim(x.reshape({1, -1}), spec);
  return {one.scale.expand({x.size(0)}).contiguous(), one.zero.expand({x.size(0)}).contiguous()};
}

at::Tensor quantize_codes(const at::Tensor& x,
                          const at::Tensor& scale,
                          const at::Tensor& zero,
                          const QuantSpec& spec) {
  validate(spec);
  const at::Tensor xf = x.to(at::kFloat);
  const at::Tensor s = align(scale.to(at::kFloat), xf);
  const at::Tensor z = align(zero.to(at::kFloat), xf);
  return codes_f32(xf, s, z, spec).to(at::kInt);
}

at::Tensor dequantize(const at::Tensor& codes, const at::Tensor& scale, const at::Tensor& zero) {
  const at::Tensor q = codes.to(at::kFloat);
  const at::Tensor s = align(scale.to(at::kFloat), q);
  const at::Tensor z = align(zero.to(at::kFloat), q);
  return s * (q - z);  // gptq quant.py quantize(): scale * (q - zero)
}

at::Tensor round_scales(const at::Tensor& scales, at::ScalarType dtype) {
  CALQ_CHECK(dtype == at::kFloat || dtype == at::kHalf || dtype == at::kBFloat16,
             "scale dtype {}: not a scale storage type; expected float32, float16 or bfloat16",
             c10::toString(dtype));
  if (dtype == at::kFloat)
    return scales.to(at::kFloat);
  const at::Tensor rounded = scales.to(dtype).to(at::kFloat);
  CALQ_CHECK(at::isfinite(rounded).all().item<bool>(),
             "a quantization scale of {} overflows {}; expected scales within its range",
             at::amax(at::abs(scales)).item<float>(), c10::toString(dtype));
  return rounded;
}

}  // namespace calq::core
