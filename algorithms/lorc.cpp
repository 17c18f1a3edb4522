#include "algorithms/lorc.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <tuple>

#include "calib/layerwise_runner.h"
#include "core/error.h"
#include "core/log.h"
#include "core/model/model.h"
#include "core/options.h"
#include "core/recipe.h"

namespace calq::algorithms {

core::LowRank low_rank_factors(const at::Tensor& error, int64_t rank, at::ScalarType factor_dtype) {
  CALQ_CHECK(error.dim() == 2 && rank >= 1, "lorc: expected a 2-d error and rank >= 1; got {}-d, "
             "rank {}", error.dim(), rank);
  // float64 on the CPU: the factors are rounded to float16 anyway, and the SVD of a few hundred
  // columns is cheap next to calibration; double keeps the truncation exact for the tests.
  const at::Tensor e = error.to(at::kCPU, at::kDouble);
  at::Tensor u, s, vh;
  std::tie(u, s, vh) = at::linalg_svd(e, /*full_matrices=*/false);
  const int64_t m = std::min<int64_t>(rank, s.size(0));
  const at::Tensor root = s.narrow(0, 0, m).sqrt();
  core::LowRank f;
  f.b = (u.narrow(1, 0, m) * root.unsqueeze(0)).to(factor_dtype).to(error.device());
  f.a = (root.unsqueeze(1) * vh.narrow(0, 0, m)).to(factor_dtype).to(error.device());
  f.stored_dtype = factor_dtype;
  return f;
}

namespace {

double proxy_loss(const at::Tensor& delta, const at::Tensor& hessian) {
  const at::Tensor d = delta.to(at::kDouble);
  return (d.matmul(hessian.to(d.device(), at::kDouble)) * d).sum().item<double>() /
         static_cast<double>(d.size(0));
}

class LorcPass : public Pass {
 public:
  LorcPass(int64_t rank, at::ScalarType factor_dtype) : rank_(rank), factor_dtype_(factor_dtype) {}
  const char* name() const override { return "lorc"; }
  const PassTraits& traits() const override {
    static const PassTraits traits = [] {
      PassTraits t;
      t.role = PassRole::Refinement;
      t.reads.quantizer_float_weight = true;  // W − Ŵ is what the factors approximate
      t.reads.collected_hessians = true;      // proxy losses before and after, where collected
      t.float_weight_formats = true;
      t.not_streamable = "the lorc pass writes its adapter from the whole model at the end";
      return t;
    }();
    return traits;
  }
  calib::StatRequest needs(const LinearTarget&) const override { return {}; }

  void apply(PassStep& step) override {
    for (const LinearTarget& target : step.targets) {
      const auto start = std::chrono::steady_clock::now();
      LinearState& state = step.linears[target.name];
      CALQ_CHECK(state.float_weight.defined(),
                 "lorc: layer {} {}: no float weight from a quantizing pass; expected rtn or gptq "
                 "before lorc", step.step.layer_index, target.name);
      core::Linear& linear = step.step.layer.linear(target.name);
      const at::Tensor w = state.float_weight.to(at::kDouble);
      const at::Tensor w_hat = linear.weight.to(at::kDouble);
      const at::Tensor error = w - w_hat;
      core::LowRank f = low_rank_factors(error, rank_, factor_dtype_);
      // The residual the run evaluates: with the factors as rounded, as the adapter stores them.
      const at::Tensor residual = error - at::mm(f.b.to(at::kDouble), f.a.to(at::kDouble));
      LinearReport report;
      const double norm = error.norm().item<double>();
      report.figures["rank"] = static_cast<double>(f.a.size(0));
      report.figures["error_fro"] = norm;
      report.figures["residual_fro"] = residual.norm().item<double>();
      report.figures["residual_rel"] = norm > 0 ? report.figures["residual_fro"] / norm : 0.0;
      const auto it = step.step.stats.find(target.name);
      if (it != step.step.stats.end() && it->second.hessian.defined()) {
        // tr(Δ H Δᵀ)/out with Δ = Ŵ − W before, Ŵ + b a − W after (RTN's proxy_loss).
        report.figures["proxy_loss_before"] = proxy_loss(-error, it->second.hessian);
        report.figures["proxy_loss_after"] = proxy_loss(-residual, it->second.hessian);
      }
      f.a = f.a.to(linear.weight.scalar_type());
      f.b = f.b.to(linear.weight.scalar_type());
      linear.put(std::make_shared<core::LowRank>(std::move(f)));
      report.figures["seconds"] =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      log::debug("layer {} {}: lorc ‖E‖ {:.4g} → {:.4g}", step.step.layer_index, target.name, norm,
                 report.figures["residual_fro"]);
      state.reports["lorc"] = std::move(report);
    }
  }

 private:
  int64_t rank_;
  at::ScalarType factor_dtype_;
};

}  // namespace

std::unique_ptr<Pass> make_lorc(const core::Options& options, const core::SchemeSection&) {
  const int64_t rank = options.get_int_at_least("rank", 8, 1);
  const std::string dtype =
      options.get_string_in("factor_dtype", "float16", {"float16", "bfloat16", "float32"});
  options.finish();
  const at::ScalarType factor_dtype =
      dtype == "float16" ? at::kHalf : dtype == "bfloat16" ? at::kBFloat16 : at::kFloat;
  return std::make_unique<LorcPass>(rank, factor_dtype);
}

}  // namespace calq::algorithms
