#include "core/quant/float_grids.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "core/error.h"
#include "core/quant/quantized_tensor.h"

namespace calq::core {
namespace {

// bitsandbytes functional.py get_4bit_type("nf4"), as listed in docs/algorithms.md §1.5.
constexpr std::array<float, 16> kNf4 = {
    -1.0f,
    -0.6961928009986877f,
    -0.5250730514526367f,
    -0.39491748809814453f,
    -0.28444138169288635f,
    -0.18477343022823334f,
    -0.09105003625154495f,
    0.0f,
    0.07958029955625534f,
    0.16093020141124725f,
    0.24611230194568634f,
    0.33791524171829224f,
    0.44070982933044434f,
    0.5626170039176941f,
    0.7229568362236023f,
    1.0f,
};

// The values a rounding searches, ascending. FP formats are sign-magnitude, so their table holds
// the non-negative magnitudes and the sign is restored after; index parity = code parity (the
// magnitude bit pattern increases with the value), which makes "ties to even index" IEEE's
// ties-to-even mantissa. NF4 is searched signed, index = code.
struct Table {
  std::vector<float> values;
  bool sign_magnitude = true;
};

// Magnitudes of a minifloat with `e_bits` exponent and `m_bits` mantissa bits and `bias`, for
// every magnitude pattern below `n_patterns` (patterns at and above it are NaN/Inf).
std::vector<float> minifloat_magnitudes(int e_bits, int m_bits, int bias, int n_patterns) {
  std::vector<float> out;
  const int m_count = 1 << m_bits;
  CALQ_ASSERT(n_patterns <= (1 << (e_bits + m_bits)), "bad minifloat pattern count");
  for (int code = 0; code < n_patterns; ++code) {
    const int e = code >> m_bits;
    const int f = code & (m_count - 1);
    // e = 0: subnormal f/2^m · 2^(1-bias); else (1 + f/2^m) · 2^(e-bias). Exact in float.
    const double v = e == 0 ? std::ldexp(static_cast<double>(f) / m_count, 1 - bias)
                            : std::ldexp(1.0 + static_cast<double>(f) / m_count, e - bias);
    out.push_back(static_cast<float>(v));
  }
  return out;
}

const Table& table(FpFormat format) {
  // E4M3fn: 127 = S.1111.111 is NaN → patterns 0..126. E5M2: exponent 31 is Inf/NaN → 0..123.
  static const Table kE4M3{minifloat_magnitudes(4, 3, 7, 127), true};
  static const Table kE5M2{minifloat_magnitudes(5, 2, 15, 124), true};
  static const Table kE2M1{minifloat_magnitudes(2, 1, 1, 8), true};
  static const Table kNf4Table{std::vector<float>(kNf4.begin(), kNf4.end()), false};
  switch (format) {
    case FpFormat::E4M3:
      return kE4M3;
    case FpFormat::E5M2:
      return kE5M2;
    case FpFormat::E2M1:
      return kE2M1;
    case FpFormat::NF4:
      return kNf4Table;
  }
  CALQ_ASSERT(false, "bad FpFormat value {}", static_cast<int>(format));
  return kE4M3;
}

// Nearest table value to v (not NaN), ties to the even index, saturating at both ends.
float nearest(const std::vector<float>& values, float v) {
  if (v <= values.front())
    return values.front();
  if (v >= values.back())
    return values.back();
  // values[i] <= v < values[i + 1]
  const auto upper = std::upper_bound(values.begin(), values.end(), v);
  const auto i = static_cast<std::size_t>(upper - values.begin()) - 1;
  const float lo = values[i];
  const float hi = values[i + 1];
  if (v == lo)
    return lo;
  // Neighbouring floats of similar magnitude (or 0): their sum and half are exact in double.
  const double mid = (static_cast<double>(lo) + static_cast<double>(hi)) / 2;
  if (v < mid)
    return lo;
  if (v > mid)
    return hi;
  return i % 2 == 0 ? lo : hi;
}

float round_one(const Table& t, float v) {
  if (std::isnan(v))
    return v;
  if (!t.sign_magnitude)
    return nearest(t.values, v);
  return std::copysign(nearest(t.values, std::fabs(v)), v);
}

}  // namespace

std::string_view fp_format_name(FpFormat format) {
  switch (format) {
    case FpFormat::E4M3:
      return "fp8_e4m3";
    case FpFormat::E5M2:
      return "fp8_e5m2";
    case FpFormat::E2M1:
      return "fp4_e2m1";
    case FpFormat::NF4:
      return "nf4";
  }
  CALQ_ASSERT(false, "bad FpFormat value {}", static_cast<int>(format));
  return {};
}

FpFormat parse_fp_format(std::string_view name) {
  for (FpFormat f : {FpFormat::E4M3, FpFormat::E5M2, FpFormat::E2M1, FpFormat::NF4}) {
    if (fp_format_name(f) == name)
      return f;
  }
  fail("unknown floating-point format \"{}\"; expected one of fp8_e4m3, fp8_e5m2, fp4_e2m1, nf4",
       name);
}

double fp_format_max(FpFormat format) {
  return table(format).values.back();
}

std::vector<float> fp_format_values(FpFormat format) {
  const Table& t = table(format);
  if (!t.sign_magnitude)
    return t.values;
  std::vector<float> out;
  for (auto it = t.values.rbegin(); it != t.values.rend(); ++it) {
    if (*it != 0.0f)
      out.push_back(-*it);
  }
  out.insert(out.end(), t.values.begin(), t.values.end());
  return out;
}

at::Tensor round_to_fp_grid(const at::Tensor& x, FpFormat format) {
  CALQ_CHECK(at::isFloatingType(x.scalar_type()),
             "round_to_fp_grid: expected a floating-point tensor; got {}",
             c10::toString(x.scalar_type()));
  const Table& t = table(format);
  const at::Tensor in = x.to(at::kCPU, at::kFloat).contiguous();
  at::Tensor out = at::empty_like(in);
  const float* src = in.data_ptr<float>();
  float* dst = out.data_ptr<float>();
  at::parallel_for(0, in.numel(), 1 << 14, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      dst[i] = round_one(t, src[i]);
  });
  return out.to(x.device());
}

at::Tensor FpQuantized::dequantize() const {
  const at::Tensor s = scales.index_select(1, g_idx.to(scales.device()).to(at::kLong));
  return s * values;
}

FpQuantized quantize_fp(const at::Tensor& w, FpFormat format, int64_t group_size,
                        bool pow2_scales) {
  CALQ_CHECK(w.dim() == 2 && w.numel() > 0 && at::isFloatingType(w.scalar_type()),
             "cannot quantize a {}-d {} weight with {} elements to {}; expected a non-empty 2-d "
             "[out, in] floating-point tensor",
             w.dim(), c10::toString(w.scalar_type()), w.numel(), fp_format_name(format));
  CALQ_CHECK(group_size == -1 || group_size > 0,
             "group_size: {} is not a valid group size; expected a positive number of input "
             "columns, or -1 for per-channel",
             group_size);
  const at::Tensor x = w.to(at::kFloat).contiguous();
  CALQ_CHECK(at::isfinite(x).all().item<bool>(),
             "cannot quantize a tensor that holds NaN or Inf; expected finite values");
  const int64_t in = x.size(1);
  const int64_t g = group_size == -1 ? in : group_size;
  const int64_t n_groups = (in + g - 1) / g;
  // amax per (row, group): pad-free, the short last group reduced on its own.
  std::vector<at::Tensor> amax;
  for (int64_t k = 0; k < n_groups; ++k) {
    const int64_t width = std::min(g, in - k * g);
    amax.push_back(at::amax(at::abs(x.narrow(1, k * g, width)), 1, /*keepdim=*/true));
  }
  const at::Tensor amax_all = at::cat(amax, 1);
  const at::Tensor fmt_max = at::scalar_tensor(fp_format_max(format), x.options());
  at::Tensor scales = amax_all / fmt_max;
  scales = at::where(scales == 0, at::ones_like(scales), scales);
  if (pow2_scales) scales = at::exp2(at::ceil(at::log2(scales)));

  FpQuantized q;
  q.format = format;
  q.group_size = group_size;
  q.scales = scales.contiguous();
  q.g_idx = sequential_g_idx(in, group_size).to(x.device());
  const at::Tensor s = q.scales.index_select(1, q.g_idx.to(at::kLong));
  q.values = round_to_fp_grid(x / s, format);
  return q;
}

at::Tensor fake_quantize_fp(const at::Tensor& w, FpFormat format, int64_t group_size,
                            bool pow2_scales) {
  return quantize_fp(w, format, group_size, pow2_scales).dequantize();
}

}  // namespace calq::core
