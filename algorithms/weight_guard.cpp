#include "algorithms/weight_guard.h"

#include <fmt/format.h>

#include "core/model/model.h"
#include "core/numeric_guard.h"

namespace calq::algorithms {
namespace {

std::string hint_for(const core::Linear& linear, std::string_view part) {
  if (linear.source.empty())
    return "the checkpoint or an earlier pass wrote them";
  return fmt::format("the checkpoint tensor is {}.{}", linear.source, part);
}

void check(core::DecoderLayer& layer, int64_t index, const std::string& name,
           std::string_view stage) {
  const core::Linear& linear = layer.linear(name);
  const core::GuardSite site{index, name, stage};
  core::require_finite(linear.weight, site, "weight", hint_for(linear, "weight"));
  core::require_finite(linear.bias, site, "bias", hint_for(linear, "bias"));
}

}  // namespace

void require_finite_weights(core::DecoderLayer& layer, int64_t index) {
  for (const std::string& name : layer.linear_names())
    check(layer, index, name, "weights as loaded");
}

void require_finite_weight(core::DecoderLayer& layer, int64_t index, const std::string& linear,
                           std::string_view stage) {
  check(layer, index, linear, stage);
}

}  // namespace calq::algorithms
