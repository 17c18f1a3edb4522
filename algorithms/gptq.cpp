#include "algorithms/gptq.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <utility>

#include "algorithms/rtn.h"
#include "algorithms/weight_guard.h"
#include "calib/layerwise_runner.h"
#include "core/error.h"
#include "core/kernels/gptq.h"
#include "core/log.h"
#include "core/model/model.h"
#include "core/numeric_guard.h"
#include "core/options.h"

namespace calq::algorithms {
namespace {

// The kernel (core/kernels/gptq.h) is core's; the pass is its one user in algorithms/.
using core::kernels::gptq_quantize;
using core::kernels::GptqOptions;
using core::kernels::GptqResult;
using core::kernels::GptqWorkspace;

class GptqPass : public Pass {
 public:
  explicit GptqPass(GptqOptions options) : options_(options) {}
  const char* name() const override { return "gptq"; }
  const PassTraits& traits() const override {
    static const PassTraits traits = [] {
      PassTraits t;
      t.role = PassRole::Quantizer;
      t.propagation = Propagation::Quantized;  // each layer's Hessians see the quantized inputs
      t.per_linear = true;
      return t;
    }();
    return traits;
  }

  calib::StatRequest needs(const LinearTarget&) const override {
    calib::StatRequest request;
    request.hessian = true;
    return request;
  }

  void apply(PassStep& step) override {
    for (const LinearTarget& target : step.targets) {
      core::DecoderLayer& layer = step.step.layer;
      const int64_t index = step.step.layer_index;
      const auto it = step.step.stats.find(target.name);
      CALQ_ASSERT(it != step.step.stats.end() && it->second.hessian.defined(),
                  "no Hessian collected for {}", target.name);
      // The calibration statistics were checked when gathered; the transforms since (awq,
      // smoothquant) divided weights and Hessians by searched scales.
      require_finite_weight(layer, index, target.name, "gptq input");
      core::require_finite(it->second.hessian, {index, target.name, "gptq input"}, "Hessian",
                           "a transform before gptq rescaled it by a zero or non-finite scale");
      const at::Tensor weight = layer.linear(target.name).weight;
      // No later pass reads this Hessian: GPTQ may damp and permute it in place instead of in a
      // copy (a 7B down_proj's is 0.46 GB), and it is freed right after.
      const bool consume = !step.later_reads_hessian;
      at::Tensor hessian = consume ? std::exchange(it->second.hessian, at::Tensor())
                                   : it->second.hessian;
      GptqResult r = quantize_linear(weight, std::move(hessian), target, index, consume);
      r.dequantized = at::Tensor();  // install_quantized dequantizes with the stored scale dtype
      // Same-shape linears of a subset reuse the workspace; the next subset's are other shapes.
      if (&target == &step.targets.back()) workspace_.release();
      LinearReport report;
      report.notes["spec"] = core::describe(target.spec);
      report.figures["bits"] = target.spec.bits;
      report.figures["group_size"] = static_cast<double>(target.spec.group_size);
      report.figures["proxy_loss"] = r.proxy_loss;
      report.figures["reference_loss"] = r.reference_loss;
      report.figures["damp"] = r.damp_used;
      report.figures["damp_escalations"] = r.damp_escalations;
      report.figures["dead_columns"] = static_cast<double>(r.dead_columns);
      report.flags["weights_finite"] = true;
      report.flags["hessian_finite"] = true;
      report.figures["seconds"] = r.seconds;
      if (r.q.short_last_group()) report.notes["short_last_group"] = "true";
      if (r.damp_escalations > 0) {
        log::warn("layer {} {}: Hessian not positive definite at damp {:g}; used damp {:g} after "
                  "{} escalation(s)",
                  index, target.name, options_.damp, r.damp_used, r.damp_escalations);
      }
      if (r.dead_columns > 0) {
        log::debug("layer {} {}: {} dead input channel(s) (H_jj = 0)", index, target.name,
                   r.dead_columns);
      }
      log::debug("layer {} {}: proxy loss {:.6g}", index, target.name, r.proxy_loss);
      install_quantized(layer, target.name, std::move(r.q), step.linears[target.name],
                        step.later_reads_float_weight);
      step.linears[target.name].reports["gptq"] = std::move(report);
    }
  }

  void finish() override { workspace_.release(); }

 private:
  // The kernel's errors (a Hessian not positive definite at max_damp, diverged error feedback)
  // know the matrix, not where it came from: they get the layer and the linear here.
  GptqResult quantize_linear(const at::Tensor& weight, at::Tensor hessian,
                             const LinearTarget& target, int64_t index, bool consume) const {
    try {
      return gptq_quantize(weight, std::move(hessian), target.spec, options_, consume,
                           &workspace_);
    } catch (const Error& e) {
      throw Error(fmt::format("layer {} {}: {}", index, target.name, e.what()));
    }
  }

  GptqOptions options_;
  mutable GptqWorkspace workspace_;  // the kernel's buffers, reused within a step
};

/// §3.4: how many ×10 escalations (0 → 0.01) stay within max_damp. The tolerance keeps
/// 1e-9 · 10⁹ from missing 1.0 by a rounding.
int escalations_within(double damp, double max_damp) {
  int n = 0;
  for (double d = damp == 0 ? 0.01 : damp * 10; d <= max_damp * (1 + 1e-9); d *= 10)
    ++n;
  return n;
}

}  // namespace

std::unique_ptr<Pass> make_gptq(const core::Options& options) {
  GptqOptions o;
  o.act_order = options.get_bool("act_order", false);
  o.damp = options.get_double_in_range("damp", 0.01, 0.0, 10.0);
  const double max_damp = options.get_double_in_range("max_damp", 1.0, 0.0, 10.0);
  CALQ_CHECK(max_damp >= o.damp, "{}: {:g} is below damp {:g}; expected max_damp >= damp",
             options.where("max_damp"), max_damp, o.damp);
  o.max_damp_escalations = escalations_within(o.damp, max_damp);
  o.block_size = options.get_int_at_least("block_size", 128, 1);
  o.static_groups = options.get_bool("static_groups", false);
  o.fit_on_updated_block = options.get_string_in("fit", "ref", {"ref", "updated"}) == "updated";
  options.finish();
  return std::make_unique<GptqPass>(o);
}

}  // namespace calq::algorithms
