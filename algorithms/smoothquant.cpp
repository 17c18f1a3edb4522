#include "algorithms/smoothquant.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <set>
#include <string>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "algorithms/targets.h"
#include "calib/layerwise_runner.h"
#include "core/error.h"
#include "core/log.h"
#include "core/model/model.h"
#include "core/model/norm_scaling.h"
#include "core/options.h"
#include "core/recipe.h"

namespace calq::algorithms {

at::Tensor smoothing_scales(const at::Tensor& act_absmax,
                            const std::vector<const core::Linear*>& linears, double alpha) {
  CALQ_ASSERT(!linears.empty(), "smoothing a group without linears");
  at::Tensor w = linears.front()->weight.abs().amax(0).to(at::kFloat);
  for (size_t i = 1; i < linears.size(); ++i)
    w = at::maximum(w, linears[i]->weight.abs().amax(0).to(at::kFloat));
  w = w.clamp_min(1e-5);
  const at::Tensor a = act_absmax.to(at::kFloat).to(w.device());
  const at::Tensor s = (a.pow(alpha) / w.pow(1.0 - alpha)).clamp_min(1e-5);
  return s.to(linears.front()->weight.scalar_type());
}

void apply_smoothing(core::Norm& norm, const std::vector<core::Linear*>& linears,
                     const at::Tensor& s) {
  core::divide_norm_output(norm, s);
  for (core::Linear* linear : linears) linear->weight.mul_(s.to(linear->weight.scalar_type()));
}

at::Tensor smooth_group(core::DecoderLayer& layer, const NormFedGroup& group,
                        const at::Tensor& act_absmax, double alpha) {
  std::vector<core::Linear*> linears;
  std::vector<const core::Linear*> const_linears;
  for (const auto& name : group.linears) {
    linears.push_back(&layer.linear(name));
    const_linears.push_back(linears.back());
  }
  const at::Tensor s = smoothing_scales(act_absmax, const_linears, alpha);
  apply_smoothing(layer.norm(group.norm), linears, s);
  return s;
}

namespace {

class SmoothQuantPass : public Pass {
 public:
  /// `linears` empty: every norm-fed linear the model has.
  SmoothQuantPass(double alpha, std::set<std::string> linears, std::string where)
      : alpha_(alpha), all_(linears.empty()), linears_(std::move(linears)),
        where_(std::move(where)) {}

  const char* name() const override { return "smoothquant"; }
  const PassTraits& traits() const override {
    static const PassTraits traits = [] {
      PassTraits t;
      t.role = PassRole::Transform;
      // The reference takes every activation scale from one float forward: the statistics of
      // all groups of a layer come from the layer before anything in it changed.
      t.schedule = PassSchedule::WholeLayer;
      t.float_weight_formats = true;
      t.must_precede = {{"awq", "searched its scales for the weights as they were"}};
      return t;
    }();
    return traits;
  }

  calib::StatRequest needs(const LinearTarget& target) const override {
    calib::StatRequest request;
    request.absmax = chosen(target.name);
    return request;
  }

  void check_model(const core::Model& model) const override {
    // Which linears a norm feeds is the family's (its schema); layers may differ (an MoE
    // model's dense and sparse layers), so every layer's groups count.
    std::vector<std::string> names;  // execution order, each once
    std::vector<NormFedGroup> groups;
    norm_fed_.clear();
    for (int64_t i = 0; i < model.n_layers(); ++i) {
      const core::LayerSchema& schema = model.layer_schema(i);
      for (const std::string& n : schema.linear_names())
        if (std::find(names.begin(), names.end(), n) == names.end()) names.push_back(n);
      for (NormFedGroup& group : norm_fed_groups(schema)) {
        norm_fed_.insert(group.linears.begin(), group.linears.end());
        groups.push_back(std::move(group));
      }
    }
    for (const std::string& linear : linears_) {
      if (std::find(names.begin(), names.end(), linear) == names.end()) {
        fail("{}: {} is not a linear of this {} model; expected some of: {}", where_,
             linear, model.config().model_type, fmt::join(names, ", "));
      }
      if (norm_fed_.count(linear) == 0) {
        fail("{}: {} has no preceding norm to fold the smoothing scale into; expected linears "
             "fed by a norm in this {} model: {}", where_, linear, model.config().model_type,
             fmt::join(norm_fed_, ", "));
      }
    }
    // A scale folded into a norm changes every linear reading it: smoothing part of a group
    // would change the model's function.
    for (const NormFedGroup& group : groups) {
      std::vector<std::string> chosen, missing;
      for (const auto& l : group.linears) (linears_.count(l) ? chosen : missing).push_back(l);
      if (!chosen.empty() && !missing.empty()) {
        fail("{}: {} share {} with {}; expected all of the group or none", where_,
             fmt::join(chosen, ", "), group.norm, fmt::join(missing, ", "));
      }
    }
  }

  void apply(PassStep& step) override {
    calib::LayerStep& s = step.step;
    for (const NormFedGroup& group : norm_fed_groups(s.model.layer_schema(s.layer_index))) {
      if (!chosen(group.linears.front())) continue;
      const auto stats = s.stats.find(group.linears.front());
      CALQ_ASSERT(stats != s.stats.end() && stats->second.absmax.defined(),
                  "no activation absmax collected for {}", group.linears.front());
      const at::Tensor absmax = stats->second.absmax;
      const float weight_max_before = max_abs(s.layer, group.linears);
      const at::Tensor scales = smooth_group(s.layer, group, absmax, alpha_);

      LinearReport report;
      const at::Tensor sf = scales.to(at::kFloat);
      report.notes["group"] = fmt::format("{} -> {}", group.norm, fmt::join(group.linears, ","));
      report.figures["alpha"] = alpha_;
      report.figures["scale_min"] = sf.min().item<double>();
      report.figures["scale_max"] = sf.max().item<double>();
      report.figures["scale_mean"] = sf.mean().item<double>();
      report.figures["act_absmax_before"] = absmax.max().item<double>();
      report.figures["weight_absmax_before"] = weight_max_before;
      report.figures["weight_absmax_after"] = max_abs(s.layer, group.linears);
      for (const auto& name : group.linears) {
        const auto it = s.stats.find(name);
        if (it != s.stats.end()) calib::rescale_inputs(it->second, scales);
      }
      report.figures["act_absmax_after"] = s.stats.at(group.linears.front()).absmax.max().item<double>();
      for (const auto& name : group.linears) step.linears[name].reports["smoothquant"] = report;
      log::debug("layer {} {}: smoothing scales in [{:.4g}, {:.4g}]", s.layer_index, group.norm,
                 report.figures["scale_min"], report.figures["scale_max"]);
    }
  }

 private:
  bool chosen(const std::string& linear) const {
    return all_ ? norm_fed_.count(linear) > 0 : linears_.count(linear) > 0;
  }

  static float max_abs(core::DecoderLayer& layer, const std::vector<std::string>& linears) {
    float m = 0.0f;
    for (const auto& name : linears)
      m = std::max(m, layer.linear(name).weight.abs().max().item<float>());
    return m;
  }

  double alpha_;
  bool all_;
  std::set<std::string> linears_;
  std::string where_;
  // The model's norm-fed linears, from check_model (which every run calls before needs()).
  mutable std::set<std::string> norm_fed_;
};

}  // namespace

std::unique_ptr<Pass> make_smoothquant(const core::Options& options,
                                       const core::SchemeSection& scheme) {
  const double alpha = options.get_double_in_range("alpha", 0.5, 0.0, 1.0);
  const std::vector<std::string> linears = options.get_strings("linears", {});
  std::set<std::string> chosen;
  // Whether each is fed by a norm depends on the model's family: check_model says.
  for (const std::string& name : linears) chosen.insert(name);
  options.finish();
  if (!scheme.activations) {
    log::warn("{}: smoothquant without scheme.activations: smoothing only pays off when "
              "activations are quantized (e.g. activations: {{bits: 8}})", options.where());
  }
  return std::make_unique<SmoothQuantPass>(alpha, std::move(chosen), options.where("linears"));
}

}  // namespace calq::algorithms
