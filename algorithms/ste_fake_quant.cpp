#include "algorithms/ste_fake_quant.h"

#include <ATen/ATen.h>

#include "core/quant/quantized_tensor.h"

namespace calq::algorithms {
namespace {

at::Tensor mask_of(const at::Tensor& w, const core::QuantizedTensor& q, const core::QuantSpec& spec) {
  const at::Tensor g_idx = q.g_idx.to(at::kLong);
  // The float32 fit (not the storage-rounded scales): the codes were computed with it.
  const at::Tensor s = q.scales.index_select(1, g_idx);
  const at::Tensor z = q.zeros.index_select(1, g_idx).to(at::kFloat);
  const bool ct = spec.grid == core::Grid::CtSym || spec.grid == core::Grid::CtAsym;
  const at::Tensor raw = ct ? at::round(w / s + z) : at::round(w / s) + z;
  const core::CodeRange cr = core::code_range(spec.grid, spec.bits);
  return at::logical_and(raw >= cr.qmin, raw <= cr.qmax).to(at::kFloat);
}

}  // namespace

at::Tensor ste_mask(const at::Tensor& latent, const core::QuantSpec& spec) {
  const at::Tensor w = latent.detach().to(at::kFloat);
  return mask_of(w, core::quantize_weight(w, spec), spec);
}

at::Tensor ste_fake_quant(const at::Tensor& latent, const core::QuantSpec& spec) {
  const at::Tensor w = latent.detach().to(at::kFloat);
  const core::QuantizedTensor q = core::quantize_weight(w, spec);
  const at::Tensor value = q.dequantize();
  if (!latent.requires_grad()) return value;
  // latent − latent.detach() is exactly +0 in the forward, so the value stays bitwise RTN's;
  // its gradient is the mask.
  const at::Tensor latent_f = latent.to(at::kFloat);
  return value + (latent_f - latent_f.detach()) * mask_of(w, q, spec);
}

}  // namespace calq::algorithms
