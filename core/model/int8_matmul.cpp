#include "core/model/int8_matmul.h"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "core/model/model.h"

namespace calq::core {

void Int8Matmul::apply(const Linear& linear, LinearFlow& flow) const {
  flow.output = int8_mixed_matmul(flow.input, linear.weight, linear.bias, decomposition_);
}

ExtensionState Int8Matmul::save() const {
  ExtensionState state{nlohmann::json{{"threshold", decomposition_.threshold}}.dump(), {}};
  if (decomposition_.float_weight.defined()) state.tensors["float_weight"] = decomposition_.float_weight;
  return state;
}

std::shared_ptr<const LinearExtension> Int8Matmul::load(const ExtensionState& state) {
  Int8Decomposition d;
  d.threshold = nlohmann::json::parse(state.settings).at("threshold").get<double>();
  if (const auto it = state.tensors.find("float_weight"); it != state.tensors.end())
    d.float_weight = it->second;
  return std::make_shared<Int8Matmul>(std::move(d));
}

}  // namespace calq::core
