#include "algorithms/mixed_precision.h"

#include <ATen/ATen.h>

#include <cmath>
#include <limits>

#include "algorithms/targets.h"
#include "calib/layerwise_runner.h"
#include "core/error.h"
#include "core/model/model.h"
#include "core/quant/quantizer.h"

namespace calq::algorithms {

namespace {

/// The spec of `linear` at candidate `c`: the scheme's grid and scale dtype, c's bits and group.
core::QuantSpec candidate_spec(const core::SchemeSection& scheme, const std::string& linear,
                               const core::MixedCandidate& c) {
  core::SchemeSection at_candidate = scheme;
  at_candidate.weights.bits = c.bits;
  at_candidate.weights.group_size = c.group_size;
  at_candidate.overrides.clear();
  at_candidate.mixed_precision.reset();
  const auto target = resolve_target(at_candidate, linear);
  CALQ_ASSERT(target.has_value(), "candidate spec of an untargeted linear");
  return target->spec;
}

/// Collects each targeted linear's float Hessian (one subset per layer, float propagation) and
/// turns it into the candidates' proxies; changes no weight.
class SensitivityHandler : public calib::LayerHandler {
 public:
  SensitivityHandler(const core::Recipe& recipe, std::vector<LinearSensitivity>& out)
      : recipe_(recipe), out_(out) {}

  void begin_layer(core::DecoderLayer&, int64_t) override {}
  std::vector<std::vector<std::string>> schedule(core::DecoderLayer& layer) override {
    return {layer.linear_names()};
  }
  calib::Requirements needs(core::DecoderLayer& layer,
                            const std::vector<std::string>& subset) override {
    calib::Requirements needs;
    for (const std::string& name : subset) {
      if (resolve_target(recipe_.scheme, name, layer.index())) needs[name].hessian = true;
    }
    return needs;
  }
  void process(calib::LayerStep& step) override {
    const auto& candidates = recipe_.scheme.mixed_precision->candidates;
    for (const auto& [name, stats] : step.stats) {
      const at::Tensor w = step.layer.linear(name).weight.to(at::kFloat);
      LinearSensitivity s;
      s.layer = step.layer_index;
      s.linear = name;
      s.out_features = w.size(0);
      s.in_features = w.size(1);
      for (const core::MixedCandidate& c : candidates) {
        const at::Tensor delta =
            core::quantize_weight(w, candidate_spec(recipe_.scheme, name, c)).dequantize() - w;
        s.proxy.push_back((delta.matmul(stats.hessian) * delta).sum().item<double>());
      }
      out_.push_back(std::move(s));
    }
  }
  bool propagate_quantized() const override { return false; }
  void end_layer(core::DecoderLayer&, int64_t) override {}
  std::optional<std::string> cache_scope(int64_t, int64_t) const override {
    return std::string();  // the float model throughout
  }

 private:
  const core::Recipe& recipe_;
  std::vector<LinearSensitivity>& out_;
};

}  // namespace

double stored_bits_per_weight(const core::MixedCandidate& c, bool sym, int64_t in_features) {
  const double g = c.group_size > 0 ? static_cast<double>(c.group_size)
                                    : static_cast<double>(in_features);
  return c.bits + (16.0 + (sym ? 0.0 : c.bits)) / g;
}

std::vector<LinearSensitivity> hessian_sensitivity(core::Model& model, const core::Recipe& recipe,
                                                   const at::Tensor& windows, int64_t batch_size,
                                                   calib::CacheUse cache) {
  CALQ_CHECK(recipe.scheme.mixed_precision.has_value(),
             "{}: scheme.mixed_precision: missing; expected {{budget_bits, candidates}}",
             recipe.file);
  std::vector<LinearSensitivity> out;
  SensitivityHandler handler(recipe, out);
  calib::RunnerOptions options;
  options.batch_size = batch_size;
  options.cache = std::move(cache);
  calib::LayerwiseRunner(model, windows, options).run(handler);
  return out;
}

BitAllocation allocate_bits(const std::vector<LinearSensitivity>& linears,
                            const core::MixedPrecisionSection& section, bool sym) {
  CALQ_CHECK(!linears.empty(), "scheme.mixed_precision: no targeted linear to allocate bits to");
  const size_t n_choices = section.candidates.size();
  double total_weights = 0;
  double min_bits = 0;
  for (const auto& l : linears) {
    const double n = static_cast<double>(l.out_features * l.in_features);
    total_weights += n;
    double cheapest = std::numeric_limits<double>::infinity();
    for (const auto& c : section.candidates)
      cheapest = std::min(cheapest, n * stored_bits_per_weight(c, sym, l.in_features));
    min_bits += cheapest;
  }
  const double budget = section.budget_bits * total_weights;
  CALQ_CHECK(min_bits <= budget,
             "scheme.mixed_precision.budget_bits: {} is below the smallest candidates' {:.4f} "
             "stored bits per weight; expected a larger budget or smaller candidates",
             section.budget_bits, min_bits / total_weights);

  // DP over the budget in `units` steps; costs round up so any DP-feasible choice fits.
  constexpr int64_t kUnits = 20000;
  const double unit = budget / kUnits;
  const double inf = std::numeric_limits<double>::infinity();
  const size_t L = linears.size();
  std::vector<std::vector<double>> best(L + 1, std::vector<double>(kUnits + 1, inf));
  std::vector<std::vector<int>> pick(L, std::vector<int>(kUnits + 1, -1));
  std::fill(best[0].begin(), best[0].end(), 0.0);
  for (size_t l = 0; l < L; ++l) {
    const double n = static_cast<double>(linears[l].out_features * linears[l].in_features);
    for (size_t c = 0; c < n_choices; ++c) {
      const auto cost = static_cast<int64_t>(std::ceil(
          n * stored_bits_per_weight(section.candidates[c], sym, linears[l].in_features) / unit -
          1e-9));
      const double loss = linears[l].proxy.at(c);
      for (int64_t b = cost; b <= kUnits; ++b) {
        const double v = best[l][b - cost] + loss;
        if (v < best[l + 1][b]) {
          best[l + 1][b] = v;
          pick[l][b] = static_cast<int>(c);
        }
      }
    }
  }
  CALQ_CHECK(best[L][kUnits] < inf,
             "scheme.mixed_precision.budget_bits: {} leaves no room once costs are rounded to "
             "1/{} of the budget; expected a slightly larger budget",
             section.budget_bits, kUnits);

  BitAllocation a;
  a.budget_bits = section.budget_bits;
  a.choice.assign(L, 0);
  int64_t b = kUnits;
  for (size_t l = L; l-- > 0;) {
    const int c = pick[l][b];
    CALQ_ASSERT(c >= 0, "bit allocation: broken DP trace");
    a.choice[l] = static_cast<size_t>(c);
    const double n = static_cast<double>(linears[l].out_features * linears[l].in_features);
    b -= static_cast<int64_t>(std::ceil(
        n * stored_bits_per_weight(section.candidates[c], sym, linears[l].in_features) / unit -
        1e-9));
  }
  double bits = 0;
  for (size_t l = 0; l < L; ++l) {
    const auto& c = section.candidates[a.choice[l]];
    const double n = static_cast<double>(linears[l].out_features * linears[l].in_features);
    bits += n * stored_bits_per_weight(c, sym, linears[l].in_features);
    a.proxy_total += linears[l].proxy[a.choice[l]];
    core::WeightOverride o;
    o.pattern = "layers." + std::to_string(linears[l].layer) + "." + linears[l].linear;
    o.bits = c.bits;
    o.group_size = c.group_size;
    a.overrides.push_back(o);
  }
  a.avg_bits = bits / total_weights;
  return a;
}

core::Recipe with_allocation(const core::Recipe& recipe, const BitAllocation& allocation) {
  core::Recipe out = recipe;
  for (const auto& o : allocation.overrides) out.scheme.overrides.push_back(o);
  return out;
}

}  // namespace calq::algorithms
