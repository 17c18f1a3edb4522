#include "algorithms/gptq.h"

#include <ATen/ATen.h>

#include "algorithms/gptq_kernel.h"
#include "algorithms/rtn.h"
#include "calib/layerwise_runner.h"
#include "core/error.h"
#include "core/log.h"
#include "core/model/model.h"
#include "core/options.h"

namespace calq::algorithms {
namespace {

class GptqPass : public Pass {
 public:
  explicit GptqPass(GptqOptions options) : options_(options) {}
  const char* name() const override { return "gptq"; }
  bool quantizes() const override { return true; }

  calib::StatRequest needs(const LinearTarget&) const override {
    calib::StatRequest request;
    request.hessian = true;
    return request;
  }

  void apply(PassStep& step) override {
    for (const LinearTarget& target : step.targets) {
      core::DecoderLayer& layer = step.step.layer;
      const auto it = step.step.stats.find(target.name);
      CALQ_ASSERT(it != step.step.stats.end() && it->second.hessian.defined(),
                  "no Hessian collected for {}", target.name);
      const at::Tensor weight = layer.linear(target.name).weight;
      GptqResult r = gptq_quantize(weight, it->second.hessian, target.spec, options_);
      LinearReport report;
      report.notes["spec"] = core::describe(target.spec);
      report.figures["bits"] = target.spec.bits;
      report.figures["group_size"] = static_cast<double>(target.spec.group_size);
      report.figures["proxy_loss"] = r.proxy_loss;
      report.figures["reference_loss"] = r.reference_loss;
      report.figures["damp"] = r.damp_used;
      report.figures["dead_columns"] = static_cast<double>(r.dead_columns);
      report.figures["seconds"] = r.seconds;
      if (r.q.short_last_group()) report.notes["short_last_group"] = "true";
      if (r.damp_used > options_.damp) {
        log::warn("layer {} {}: Hessian not positive definite at damp {}; used damp {}",
                  step.step.layer_index, target.name, options_.damp, r.damp_used);
        report.notes["damp_escalated"] = "true";
      }
      log::debug("layer {} {}: proxy loss {:.6g}", step.step.layer_index, target.name,
                 r.proxy_loss);
      install_quantized(layer, target.name, std::move(r.q), step.linears[target.name]);
      step.linears[target.name].reports["gptq"] = std::move(report);
    }
  }

  bool propagate_quantized() const override { return true; }
  void finish() override { release_gptq_scratch(); }

 private:
  GptqOptions options_;
};

}  // namespace

std::unique_ptr<Pass> make_gptq(const core::Options& options) {
  GptqOptions o;
  o.act_order = options.get_bool("act_order", false);
  o.damp = options.get_double_in_range("damp", 0.01, 0.0, 10.0);
  o.block_size = options.get_int_at_least("block_size", 128, 1);
  o.static_groups = options.get_bool("static_groups", false);
  o.fit_on_updated_block = options.get_string_in("fit", "ref", {"ref", "updated"}) == "updated";
  options.finish();
  return std::make_unique<GptqPass>(o);
}

}  // namespace calq::algorithms
