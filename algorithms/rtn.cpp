#include "algorithms/rtn.h"

#include <ATen/ATen.h>

#include <chrono>

#include "calib/layerwise_runner.h"
#include "core/model/model.h"
#include "core/options.h"

namespace calq::algorithms {

void install_quantized(core::DecoderLayer& layer, const std::string& linear,
                       core::QuantizedTensor q, LinearState& state) {
  core::Linear& target = layer.linear(linear);
  target.weight.copy_(q.dequantize().to(target.weight.scalar_type()));
  state.quantized = std::move(q);
}

namespace {

class RtnPass : public Pass {
 public:
  const char* name() const override { return "rtn"; }
  bool quantizes() const override { return true; }
  calib::StatRequest needs(const LinearTarget&) const override { return {}; }

  void apply(PassStep& step) override {
    for (const LinearTarget& target : step.targets) {
      const auto start = std::chrono::steady_clock::now();
      core::DecoderLayer& layer = step.step.layer;
      core::QuantizedTensor q =
          core::quantize_weight(layer.linear(target.name).weight.to(at::kFloat), target.spec);
      LinearReport report;
      report.notes["spec"] = core::describe(target.spec);
      report.figures["bits"] = target.spec.bits;
      report.figures["group_size"] = static_cast<double>(target.spec.group_size);
      if (q.short_last_group()) report.notes["short_last_group"] = "true";
      const auto it = step.step.stats.find(target.name);
      if (it != step.step.stats.end() && it->second.hessian.defined()) {
        const at::Tensor delta = q.dequantize() - layer.linear(target.name).weight.to(at::kFloat);
        report.figures["proxy_loss"] =
            (delta.matmul(it->second.hessian) * delta).sum().item<double>() /
            static_cast<double>(delta.size(0));
      }
      install_quantized(layer, target.name, std::move(q), step.linears[target.name]);
      report.figures["seconds"] =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      step.linears[target.name].reports["rtn"] = std::move(report);
    }
  }

};

}  // namespace

std::unique_ptr<Pass> make_rtn(const core::Options& options) {
  options.finish();
  return std::make_unique<RtnPass>();
}

}  // namespace calq::algorithms
