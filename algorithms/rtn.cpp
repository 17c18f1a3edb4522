#include "algorithms/rtn.h"

#include <ATen/ATen.h>

#include <chrono>

#include <fmt/format.h>

#include "algorithms/weight_guard.h"
#include "calib/layerwise_runner.h"
#include "core/model/model.h"
#include "core/options.h"

namespace calq::algorithms {

void install_quantized(core::DecoderLayer& layer, const std::string& linear,
                       core::QuantizedTensor q, LinearState& state, bool keep_float_weight) {
  core::Linear& target = layer.linear(linear);
  if (keep_float_weight)
    state.float_weight = target.weight.to(at::kFloat, /*non_blocking=*/false, /*copy=*/true);
  target.weight.copy_(q.dequantize().to(target.weight.scalar_type()));
  q.compact();  // a layer's codes wait for the export beside the layer: a byte each, not four
  state.quantized = std::move(q);
}

at::Tensor dequantize_fp(const core::FpQuantized& q, at::ScalarType scale_dtype) {
  core::FpQuantized rounded = q;
  rounded.scales = q.scales.to(scale_dtype).to(at::kFloat);
  return rounded.dequantize();
}

void install_fp_quantized(core::DecoderLayer& layer, const std::string& linear,
                          core::FpQuantized q, at::ScalarType scale_dtype, LinearState& state,
                          bool keep_float_weight) {
  core::Linear& target = layer.linear(linear);
  if (keep_float_weight)
    state.float_weight = target.weight.to(at::kFloat, /*non_blocking=*/false, /*copy=*/true);
  target.weight.copy_(dequantize_fp(q, scale_dtype).to(target.weight.scalar_type()));
  state.fp_quantized = std::move(q);
}

namespace {

class RtnPass : public Pass {
 public:
  const char* name() const override { return "rtn"; }
  const PassTraits& traits() const override {
    static const PassTraits traits = [] {
      PassTraits t;
      t.role = PassRole::Quantizer;
      // FP/NF4 weights are fake-quantized the same way, onto their grid with one scale per group.
      t.float_weight_formats = true;
      return t;
    }();
    return traits;
  }
  calib::StatRequest needs(const LinearTarget&) const override { return {}; }

  void apply(PassStep& step) override {
    for (const LinearTarget& target : step.targets) {
      const auto start = std::chrono::steady_clock::now();
      core::DecoderLayer& layer = step.step.layer;
      LinearState& state = step.linears[target.name];
      require_finite_weight(layer, step.step.layer_index, target.name, "rtn input");
      const at::Tensor w = layer.linear(target.name).weight.to(at::kFloat);
      LinearReport report;
      report.flags["weights_finite"] = true;
      at::Tensor w_hat;  // float32, as the proxy loss has always been computed
      report.figures["bits"] = target.spec.bits;
      report.figures["group_size"] = static_cast<double>(target.spec.group_size);
      if (target.fp) {
        report.notes["spec"] = fmt::format("{} {} scales{}", core::fp_format_name(*target.fp),
                                           target.spec.group_size == -1
                                               ? std::string("per-channel")
                                               : fmt::format("g{}", target.spec.group_size),
                                           target.pow2_scales ? " pow2" : "");
        core::FpQuantized q =
            core::quantize_fp(w, *target.fp, target.spec.group_size, target.pow2_scales);
        w_hat = dequantize_fp(q, target.spec.scale_dtype);
        install_fp_quantized(layer, target.name, std::move(q), target.spec.scale_dtype, state,
                             step.later_reads_float_weight);
      } else {
        core::QuantizedTensor q = core::quantize_weight(w, target.spec);
        report.notes["spec"] = core::describe(target.spec);
        if (q.short_last_group()) report.notes["short_last_group"] = "true";
        w_hat = q.dequantize();
        install_quantized(layer, target.name, std::move(q), state, step.later_reads_float_weight);
      }
      const auto it = step.step.stats.find(target.name);
      if (it != step.step.stats.end() && it->second.hessian.defined()) {
        // Inputs that are always zero: the proxy loss ignores their columns, as GPTQ's does.
        report.figures["dead_columns"] = static_cast<double>(
            it->second.hessian.diagonal().eq(0).sum().item<int64_t>());
        const at::Tensor delta = w_hat - w;
        report.figures["proxy_loss"] =
            (delta.matmul(it->second.hessian) * delta).sum().item<double>() /
            static_cast<double>(delta.size(0));
      }
      report.figures["seconds"] =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      state.reports["rtn"] = std::move(report);
    }
  }
};

}  // namespace

std::unique_ptr<Pass> make_rtn(const core::Options& options) {
  options.finish();
  return std::make_unique<RtnPass>();
}

}  // namespace calq::algorithms
