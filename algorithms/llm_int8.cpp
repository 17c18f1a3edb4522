#include "algorithms/llm_int8.h"

#include <ATen/ATen.h>

#include "algorithms/rtn.h"
#include "calib/layerwise_runner.h"
#include "core/model/int8_matmul.h"
#include "core/model/model.h"
#include "core/options.h"
#include "core/recipe.h"

namespace calq::algorithms {
namespace {

class LlmInt8Pass : public Pass {
 public:
  LlmInt8Pass(double threshold, bool float_outliers)
      : threshold_(threshold), float_outliers_(float_outliers) {}
  const char* name() const override { return "llm_int8"; }
  const PassTraits& traits() const override {
    static const PassTraits traits = [] {
      PassTraits t;
      t.role = PassRole::Quantizer;
      t.refuses_refinement = "llm_int8's outlier decomposition has no weight error to compensate";
      t.fake_export_only = "no checkpoint format stores LLM.int8()'s outlier decomposition";
      return t;
    }();
    return traits;
  }
  calib::StatRequest needs(const LinearTarget&) const override { return {}; }

  void apply(PassStep& step) override {
    for (const LinearTarget& target : step.targets) {
      core::Linear& linear = step.step.layer.linear(target.name);
      core::Int8Decomposition decomposition;
      decomposition.threshold = threshold_;
      if (float_outliers_) decomposition.float_weight = linear.weight.clone();
      install_quantized(step.step.layer, target.name,
                        core::quantize_weight(linear.weight.to(at::kFloat), target.spec),
                        step.linears[target.name], step.later_reads_float_weight);
      linear.put(std::make_shared<core::Int8Matmul>(std::move(decomposition)));
      LinearReport& report = step.linears[target.name].reports["llm_int8"];
      report.figures["threshold"] = threshold_;
      report.notes["outlier_weights"] = float_outliers_ ? "float" : "int8";
      report.notes["spec"] = core::describe(target.spec);
    }
  }

 private:
  double threshold_;
  bool float_outliers_;
};

}  // namespace

std::unique_ptr<Pass> make_llm_int8(const core::Options& options, const core::SchemeSection& scheme) {
  const double threshold = options.get_double_in_range("threshold", 6.0, 1e-6, 1e6);
  const bool float_outliers =
      options.get_string_in("outlier_weights", "float", {"float", "int8"}) == "float";
  options.finish();
  const core::WeightScheme& w = scheme.weights;
  if (w.bits != 8 || w.group_size != -1 || !w.sym || w.grid != core::QuantGrid::Absmax) {
    options.fail("", "llm_int8 quantizes weights to int8 absmax per output channel; expected "
                     "scheme.weights {bits: 8, group_size: -1, sym: true, grid: absmax}");
  }
  if (scheme.activations) {
    options.fail("", "llm_int8 quantizes activations itself (per token, outliers in float); "
                     "expected no scheme.activations");
  }
  return std::make_unique<LlmInt8Pass>(threshold, float_outliers);
}

}  // namespace calq::algorithms
