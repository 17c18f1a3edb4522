// rope_frequencies: transformers' modeling_rope_utils.py, operation for operation, so the tables
// match transformers' bit for bit, not merely within float32 noise. Three facts of PyTorch's
// arithmetic make that possible and are kept here: a Python scalar meets a float32 tensor as an
// ATen Scalar (rounded to float32 inside the op), what Python computes on floats stays double,
// and `c / tensor` is Tensor.__rdiv__, i.e. reciprocal(tensor) * c, not a division.
#include "core/model/rope.h"

#include <algorithm>
#include <cmath>

#include <ATen/ATen.h>

#include "core/error.h"

namespace calq::core {

const char* rope_type_name(RopeType type) {
  switch (type) {
    case RopeType::Default: return "default";
    case RopeType::Linear: return "linear";
    case RopeType::Dynamic: return "dynamic";
    case RopeType::Yarn: return "yarn";
    case RopeType::Llama3: return "llama3";
    case RopeType::LongRope: return "longrope";
  }
  return "?";
}

bool RopeSpec::operator==(const RopeSpec& o) const {
  return type == o.type && theta == o.theta && factor == o.factor &&
         low_freq_factor == o.low_freq_factor && high_freq_factor == o.high_freq_factor &&
         original_max_positions == o.original_max_positions && max_positions == o.max_positions &&
         beta_fast == o.beta_fast && beta_slow == o.beta_slow && truncate == o.truncate &&
         attention_factor == o.attention_factor && mscale == o.mscale &&
         mscale_all_dim == o.mscale_all_dim && short_factor == o.short_factor &&
         long_factor == o.long_factor && partial_rotary_factor == o.partial_rotary_factor;
}

bool rope_depends_on_length(const RopeSpec& spec) {
  return spec.type == RopeType::Dynamic || spec.type == RopeType::LongRope;
}

namespace {

at::TensorOptions f32(const at::Device& device) {
  return at::TensorOptions().device(device).dtype(at::kFloat);
}

// arange(0, dim, 2, int64).float() / dim: the exponents of every _compute_* function.
at::Tensor exponents(int64_t dim, const at::Device& device) {
  return at::arange(0, dim, 2, f32(device).dtype(at::kLong)).to(at::kFloat) / dim;
}

// 1.0 / base ** exponents (_compute_default_rope_parameters). calq's default rope always took
// the reciprocal; 1/x rounds the same as the division for float32.
at::Tensor default_inv_freq(double base, int64_t dim, const at::Device& device) {
  return at::reciprocal(at::pow(base, exponents(dim, device)));
}

// yarn_get_mscale
double yarn_mscale(double scale, double mscale = 1.0) {
  return scale <= 1.0 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0;
}

// c / t as Python evaluates it (Tensor.__rdiv__: t.reciprocal() * c).
at::Tensor rdiv(double c, const at::Tensor& t) { return at::reciprocal(t) * c; }

RopeFrequencies llama3(const RopeSpec& s, int64_t dim, const at::Device& device) {
  // _compute_llama3_parameters: wavelengths above original context / low_freq_factor are
  // interpolated (divided by factor), those below context / high_freq_factor kept, the band
  // between blended linearly in context / wavelength.
  const at::Tensor inv_freq = default_inv_freq(s.theta, dim, device);
  const double old_context = double(s.original_max_positions);
  const double low_freq_wavelen = old_context / s.low_freq_factor;
  const double high_freq_wavelen = old_context / s.high_freq_factor;
  const at::Tensor wavelen = rdiv(2 * M_PI, inv_freq);
  at::Tensor inv_freq_llama = at::where(wavelen > low_freq_wavelen, inv_freq / s.factor, inv_freq);
  const at::Tensor smooth = (rdiv(old_context, wavelen) - s.low_freq_factor) /
                            (s.high_freq_factor - s.low_freq_factor);
  const at::Tensor smoothed =
      at::rsub(smooth, 1) * inv_freq_llama / s.factor + smooth * inv_freq_llama;
  const at::Tensor is_medium =
      at::logical_not(wavelen < high_freq_wavelen) * at::logical_not(wavelen > low_freq_wavelen);
  inv_freq_llama = at::where(is_medium, smoothed, inv_freq_llama);
  return {inv_freq_llama, 1.0};
}

RopeFrequencies yarn(const RopeSpec& s, int64_t dim, const at::Device& device) {
  // _compute_yarn_parameters (YaRN, Peng et al. 2023, §3.2–3.4): per-dimension blend of
  // extrapolated and interpolated frequencies by a ramp over the correction range, and an
  // attention factor 0.1·ln(factor) + 1 on cos and sin.
  double attention = 1.0;
  if (s.attention_factor) {
    attention = *s.attention_factor;
  } else if (s.mscale && s.mscale_all_dim && *s.mscale != 0 && *s.mscale_all_dim != 0) {
    attention = yarn_mscale(s.factor, *s.mscale) / yarn_mscale(s.factor, *s.mscale_all_dim);
  } else {
    attention = yarn_mscale(s.factor);
  }
  const double base = s.theta;
  const auto correction_dim = [&](double rotations) {
    return double(dim) * std::log(double(s.original_max_positions) / (rotations * 2 * M_PI)) /
           (2 * std::log(base));
  };
  double low = correction_dim(s.beta_fast);
  double high = correction_dim(s.beta_slow);
  if (s.truncate) {
    low = std::floor(low);
    high = std::ceil(high);
  }
  low = std::max(low, 0.0);
  high = std::min(high, double(dim - 1));
  if (low == high) high += 0.001;  // linear_ramp_factor
  const at::Tensor pos_freqs = at::pow(base, exponents(dim, device));
  const at::Tensor extrapolation = rdiv(1.0, pos_freqs);
  const at::Tensor interpolation = rdiv(1.0, pos_freqs * s.factor);
  const at::Tensor ramp =
      at::clamp((at::arange(dim / 2, f32(device)) - low) / (high - low), 0, 1);
  const at::Tensor extrapolation_factor = at::rsub(ramp, 1);
  const at::Tensor inv_freq = interpolation * at::rsub(extrapolation_factor, 1) +
                              extrapolation * extrapolation_factor;
  return {inv_freq, attention};
}

RopeFrequencies dynamic_ntk(const RopeSpec& s, int64_t dim, int64_t seq_len,
                            const at::Device& device) {
  // _compute_dynamic_ntk_parameters as dynamic_rope_update calls it once a sequence outgrows
  // max_position_embeddings: seq_len is then an int64 tensor, so the new base is a float32
  // 0-dim tensor, not a double. Within the context the frequencies are the default ones.
  if (seq_len <= s.max_positions) return {default_inv_freq(s.theta, dim, device), 1.0};
  const at::Tensor length = at::full({}, seq_len, f32(device).dtype(at::kLong));
  const at::Tensor ratio =
      at::pow(length * s.factor / s.max_positions - (s.factor - 1), double(dim) / double(dim - 2));
  const at::Tensor base = ratio * s.theta;
  return {rdiv(1.0, at::pow(base, exponents(dim, device))), 1.0};
}

RopeFrequencies longrope(const RopeSpec& s, int64_t dim, int64_t seq_len,
                         const at::Device& device) {
  // _compute_longrope_parameters with dynamic_rope_update's choice: the long factors once the
  // sequence is longer than the original context, the short ones otherwise.
  double attention = 1.0;
  if (s.attention_factor) {
    attention = *s.attention_factor;
  } else if (s.factor > 1.0) {
    attention = std::sqrt(1 + std::log(s.factor) / std::log(double(s.original_max_positions)));
  }
  const std::vector<double>& factors =
      seq_len > s.original_max_positions ? s.long_factor : s.short_factor;
  CALQ_CHECK(int64_t(factors.size()) == dim / 2,
             "longrope: {} factors for a head of {} rotated channels; expected {} (one per pair)",
             factors.size(), dim, dim / 2);
  const at::Tensor ext = at::tensor(factors, f32(device).dtype(at::kDouble)).to(at::kFloat);
  return {rdiv(1.0, ext * at::pow(s.theta, exponents(dim, device))), attention};
}

}  // namespace

RopeFrequencies rope_frequencies(const RopeSpec& spec, int64_t head_dim, int64_t seq_len,
                                 const at::Device& device) {
  switch (spec.type) {
    case RopeType::Default: return {default_inv_freq(spec.theta, head_dim, device), 1.0};
    case RopeType::Linear: return {default_inv_freq(spec.theta, head_dim, device) / spec.factor, 1.0};
    case RopeType::Dynamic: return dynamic_ntk(spec, head_dim, seq_len, device);
    case RopeType::Yarn: return yarn(spec, head_dim, device);
    case RopeType::Llama3: return llama3(spec, head_dim, device);
    case RopeType::LongRope: return longrope(spec, head_dim, seq_len, device);
  }
  return {};
}


std::pair<at::Tensor, at::Tensor> rope_tables(const RopeSpec& spec, const RopeFrequencies& cached,
                                              int64_t head_dim, int64_t seq_len,
                                              c10::ScalarType dtype, int64_t past) {
  // freqs = positions ⊗ inv_freq in float32, emb = cat(freqs, freqs); cos/sin scaled by
  // attention_scaling (yarn, longrope) in float32, then cast to the compute dtype
  // (LlamaRotaryEmbedding.forward).
  const int64_t total = past + seq_len;
  const RopeFrequencies rope =
      rope_depends_on_length(spec)
          ? rope_frequencies(spec, head_dim, total, cached.inv_freq.device())
          : cached;
  const at::Tensor positions = at::arange(total, rope.inv_freq.options());
  const at::Tensor freqs = at::outer(positions, rope.inv_freq);
  const at::Tensor emb = at::cat({freqs, freqs}, -1);
  at::Tensor cos = emb.cos(), sin = emb.sin();
  if (rope.attention_scaling != 1.0) {
    cos = cos * rope.attention_scaling;
    sin = sin * rope.attention_scaling;
  }
  if (past > 0) {
    cos = cos.narrow(0, past, seq_len);
    sin = sin.narrow(0, past, seq_len);
  }
  return {cos.to(dtype), sin.to(dtype)};
}

// transformers apply_rotary_pos_emb: x·cos + rotate_half(x)·sin, rotate_half(x) =
// cat(-x[.., hd/2:], x[.., :hd/2]). x [B, S, n, hd]; cos, sin [S, 1, hd]. Written as
// x·cos, then += (∓ the other half)·sin per half: the same products and sums (negation is
// exact), without materialising rotate_half.
at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  const int64_t half = x.size(-1) / 2;
  at::Tensor out = x * cos;
  out.narrow(-1, 0, half).addcmul_(x.narrow(-1, half, half), sin.narrow(-1, 0, half), -1);
  out.narrow(-1, half, half).addcmul_(x.narrow(-1, 0, half), sin.narrow(-1, half, half), 1);
  return out;
}

}  // namespace calq::core
