#include "core/quant/llm_int8.h"

#include <ATen/ATen.h>

namespace calq::core {

at::Tensor int8_mixed_matmul(const at::Tensor& x2d, const at::Tensor& wq, const at::Tensor& bias,
                             Int8Decomposition& d) {
  const at::Tensor x = x2d.to(at::kFloat);
  const at::Tensor is_outlier = x.abs() >= d.threshold;           // elements
  const at::Tensor outlier_cols = is_outlier.any(0);               // [in]
  // Step 2: outlier elements do not inflate the row scale; a = max |x| of the rest.
  const at::Tensor rest = x.masked_fill(is_outlier, 0.0);
  const at::Tensor a = rest.abs().amax(1, /*keepdim=*/true);       // [T, 1]
  const at::Tensor safe_a = at::where(a > 0, a, at::ones_like(a));
  at::Tensor ca = at::round(rest * 127.0 / safe_a);                // int8 codes in [−127, 127]
  ca.masked_fill_(outlier_cols.unsqueeze(0), 0.0);
  const at::Tensor xq = ca * safe_a / 127.0;
  at::Tensor y = at::mm(xq, wq.to(at::kFloat).t());
  const int64_t n_outliers = outlier_cols.sum().item<int64_t>();
  if (n_outliers > 0) {
    const at::Tensor cols = outlier_cols.nonzero().reshape({-1});
    const at::Tensor w = d.float_weight.defined() ? d.float_weight : wq;
    y.addmm_(x.index_select(1, cols), w.to(at::kFloat).index_select(1, cols).t());
  }
  if (bias.defined()) y.add_(bias.to(at::kFloat));
  ++d.calls;
  d.columns += x.size(1);
  d.outlier_columns += n_outliers;
  return y.to(x2d.scalar_type());
}

}  // namespace calq::core
