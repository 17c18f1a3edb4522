#include "core/model/low_rank.h"

#include <string>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/io/dtype.h"

namespace calq::core {

void LowRank::apply(const Linear&, LinearFlow& flow) const {
  flow.output.addmm_(at::mm(flow.input, a.t()), b.t());
}

ExtensionState LowRank::save() const {
  const std::string dtype(dtype_name(from_scalar_type(stored_dtype)));
  return {nlohmann::json{{"stored_dtype", dtype}}.dump(), {{"a", a}, {"b", b}}};
}

std::shared_ptr<const LinearExtension> LowRank::load(const ExtensionState& state) {
  const std::string dtype = nlohmann::json::parse(state.settings).at("stored_dtype").get<std::string>();
  const auto parsed = dtype_from_name(dtype);
  CALQ_CHECK(parsed.has_value(), "low-rank factors stored as \"{}\"; expected a safetensors dtype "
             "name such as F16", dtype);
  const auto a = state.tensors.find("a"), b = state.tensors.find("b");
  CALQ_CHECK(a != state.tensors.end() && b != state.tensors.end(),
             "low-rank factors without {}; expected both a and b", a == state.tensors.end() ? "a" : "b");
  auto f = std::make_shared<LowRank>();
  f->a = a->second;
  f->b = b->second;
  f->stored_dtype = to_scalar_type(*parsed);
  return f;
}

}  // namespace calq::core
