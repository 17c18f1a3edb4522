#include "core/model/norm_scaling.h"

#include <ATen/ATen.h>

namespace calq::core {
namespace {

enum class Op { Divide, Multiply };

void apply(at::Tensor& t, const at::Tensor& by, Op op) {
  const at::Tensor b = by.to(t.device(), t.scalar_type());
  if (op == Op::Divide)
    t.div_(b);
  else
    t.mul_(b);
}

void scale_output(Norm& norm, const at::Tensor& by, Op op) {
  if (norm.form == NormForm::RmsOnePlus) {
    // The effective gain 1 + γ scales; γ is stored without the 1 (transformers GemmaRMSNorm).
    // In float32 whatever γ's dtype, so a bf16 γ near −1 does not lose 1 + γ to cancellation
    // before it is rounded once.
    at::Tensor gain = norm.weight.to(at::kFloat) + 1.0;
    apply(gain, by.to(at::kFloat), op);
    norm.weight.copy_(gain - 1.0);
    return;
  }
  // γ ⊙ x̂ + β: both terms scale. Exactly the earlier in-place division (bit-identical results).
  apply(norm.weight, by, op);
  if (norm.bias.defined()) apply(norm.bias, by, op);
}

}  // namespace

void divide_norm_output(Norm& norm, const at::Tensor& s) { scale_output(norm, s, Op::Divide); }

void multiply_norm_output(Norm& norm, const at::Tensor& f) { scale_output(norm, f, Op::Multiply); }

}  // namespace calq::core
