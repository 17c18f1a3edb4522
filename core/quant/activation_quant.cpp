#include "core/quant/activation_quant.h"

#include <ATen/ATen.h>

#include "core/error.h"
#include "core/kernels/fake_quant.h"

namespace calq::core {
namespace {

QuantSpec as_uniform_spec(const ActQuantSpec& spec) {
  QuantSpec q;
  q.bits = spec.bits;
  q.grid = activation_grid(spec);
  q.granularity = Granularity::PerChannel;  // one per row of the 2-d view; validated below
  q.group_size = -1;
  validate(q);
  return q;
}

at::Tensor rows_of(const at::Tensor& x) {
  CALQ_CHECK(x.dim() >= 1 && x.numel() > 0 && at::isFloatingType(x.scalar_type()),
             "cannot quantize a {}-d {} activation with {} elements; expected a non-empty "
             "floating-point [..., in] tensor",
             x.dim(), c10::toString(x.scalar_type()), x.numel());
  return x.reshape({-1, x.size(-1)});
}

void check_fp(const ActQuantSpec& spec) {
  CALQ_CHECK(spec.sym && spec.bits == 8 &&
                 (*spec.fp == FpFormat::E4M3 || *spec.fp == FpFormat::E5M2),
             "{} activations: expected an FP8 format (fp8_e4m3 or fp8_e5m2), 8 bits, symmetric",
             fp_format_name(*spec.fp));
}

/// max(amax, 1e-5) / fmax per row of `rows` ([tokens]) or for all of it ([1]).
at::Tensor fp_scales(const at::Tensor& rows, const ActQuantSpec& spec) {
  const at::Tensor amax = spec.granularity == ActGranularity::PerTensor
                              ? rows.abs().amax().reshape({1})
                              : rows.abs().amax(1);
  return amax.clamp_min(1e-5) / fp_format_max(*spec.fp);
}

/// A static scale is one positive value for the whole tensor.
void check_static_scale(const ActQuantSpec& spec, const at::Tensor& static_scale) {
  CALQ_CHECK(spec.granularity == ActGranularity::PerTensor,
             "a static activation scale is one scale per tensor; expected per-tensor "
             "granularity, not per-token");
  CALQ_CHECK(static_scale.numel() == 1 && static_scale.item<double>() > 0,
             "static activation scale: expected one positive value; got {} values",
             static_scale.numel());
}

at::Tensor fake_quantize_fp_activations(const at::Tensor& x, const ActQuantSpec& spec,
                                        const std::optional<at::Tensor>& static_scale,
                                        const std::optional<at::Tensor>& static_zero) {
  check_fp(spec);
  const at::Tensor rows = rows_of(x).to(at::kFloat);
  at::Tensor scale;
  if (static_scale.has_value()) {
    check_static_scale(spec, *static_scale);
    CALQ_CHECK(!static_zero.has_value() || static_zero->item<double>() == 0,
               "{} activations have no zero point; expected none or 0", fp_format_name(*spec.fp));
    scale = static_scale->to(rows.device(), at::kFloat).reshape({1});
  } else {
    CALQ_CHECK(!static_zero.has_value(), "static activation zero point given without a scale");
    scale = fp_scales(rows, spec);
  }
  const at::Tensor s = scale.reshape({-1, 1});
  return (round_to_fp_grid(rows / s, *spec.fp) * s).reshape(x.sizes()).to(x.scalar_type());
}

}  // namespace

Grid activation_grid(const ActQuantSpec& spec) {
  return spec.sym ? Grid::Absmax : Grid::AwqAsym;
}

QuantParams fit_activation_params(const at::Tensor& x, const ActQuantSpec& spec) {
  if (spec.fp) {
    check_fp(spec);
    const at::Tensor rows = rows_of(x).to(at::kFloat);
    const at::Tensor scale = fp_scales(rows, spec);
    const at::Tensor shaped = spec.granularity == ActGranularity::PerTensor
                                  ? scale
                                  : scale.reshape(x.sizes().slice(0, x.dim() - 1));
    return {shaped, at::zeros(shaped.sizes(), shaped.options().dtype(at::kInt))};
  }
  const QuantSpec q = as_uniform_spec(spec);
  const at::Tensor rows = rows_of(x);
  if (spec.granularity == ActGranularity::PerTensor) {
    const QuantParams p = fit_params_last_dim(rows.reshape({-1}), q);  // 0-dim
    return {p.scale.reshape({1}), p.zero.reshape({1})};
  }
  const QuantParams p = fit_params_last_dim(rows, q);
  const at::IntArrayRef lead = x.sizes().slice(0, x.dim() - 1);
  return {p.scale.reshape(lead), p.zero.reshape(lead)};
}

at::Tensor fake_quantize_activations(const at::Tensor& x,
                                     const ActQuantSpec& spec,
                                     const std::optional<at::Tensor>& static_scale,
                                     const std::optional<at::Tensor>& static_zero) {
  if (spec.fp) return fake_quantize_fp_activations(x, spec, static_scale, static_zero);
  const QuantSpec q = as_uniform_spec(spec);
  const at::Tensor rows = rows_of(x).to(at::kFloat);
  at::Tensor scale;
  at::Tensor zero;
  if (static_scale.has_value()) {
    check_static_scale(spec, *static_scale);
    scale = static_scale->to(rows.device(), at::kFloat).reshape({1});
    if (spec.sym) {
      CALQ_CHECK(!static_zero.has_value() ||
                     (static_zero->numel() == 1 && static_zero->item<double>() == 0),
                 "static activation zero point given for a symmetric grid; expected none or 0");
      zero = at::zeros({1}, rows.options().dtype(at::kInt));
    } else {
      CALQ_CHECK(static_zero.has_value() && static_zero->numel() == 1,
                 "asymmetric static activation quantization needs one zero point; expected "
                 "static_zero with one value");
      zero = static_zero->to(rows.device(), at::kInt).reshape({1});
      const int32_t z = zero.item<int32_t>();
      const CodeRange cr = code_range(q.grid, q.bits);
      CALQ_CHECK(z >= cr.qmin && z <= cr.qmax,
                 "static activation zero point {} is outside the {}-bit code range [{}, {}]", z,
                 q.bits, cr.qmin, cr.qmax);
    }
  } else {
    CALQ_CHECK(!static_zero.has_value(), "static activation zero point given without a scale");
    const QuantParams p = spec.granularity == ActGranularity::PerTensor
                              ? fit_params_last_dim(rows.reshape({-1}), q)  // 0-dim
                              : fit_params_last_dim(rows, q);               // [tokens]
    scale = p.scale.reshape({-1});
    zero = p.zero.reshape({-1});
  }
  // The grid arithmetic is the kernel's: CPU or CUDA, as x (core/kernels/fake_quant.h).
  return kernels::fake_quantize_rows(rows, scale, zero, q).reshape(x.sizes()).to(x.scalar_type());
}

}  // namespace calq::core
