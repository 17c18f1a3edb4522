#include "core/model/activation_quant_extensions.h"

#include <string>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/model/model.h"

namespace calq::core {
namespace {

using nlohmann::json;

// The fake-quantized activation `q` of `x`, with the straight-through estimator's gradient when
// autograd records (LKD, QAT train through quantized activations): x − x.detach() is exactly +0,
// so the value stays q's.
at::Tensor straight_through(const at::Tensor& q, const at::Tensor& x) {
  return x.requires_grad() ? q + (x - x.detach()) : q;
}

// The bmm-input quantization of a linear's output [tokens, out]: per part of a fused linear
// (q, k, v of Phi-3's qkv_proj are three matmul inputs, each with its own per-token scale, as
// the unfused q_proj, k_proj, v_proj outputs would be), else the whole row.
at::Tensor quantize_output(const at::Tensor& out, const ActQuantSpec& spec,
                           const std::vector<int64_t>& parts) {
  if (parts.empty()) return fake_quantize_activations(out, spec);
  std::vector<at::Tensor> quantized;
  int64_t begin = 0;
  for (const int64_t rows : parts) {
    quantized.push_back(fake_quantize_activations(out.narrow(-1, begin, rows), spec));
    begin += rows;
  }
  CALQ_ASSERT(begin == out.size(-1), "fused linear parts cover {} of {} output rows", begin,
              out.size(-1));
  return at::cat(quantized, -1);
}

std::string spec_settings(const ActQuantSpec& spec) {
  return json{{"bits", spec.bits},
              {"sym", spec.sym},
              {"granularity", spec.granularity == ActGranularity::PerTensor ? "per_tensor" : "per_token"},
              {"fp", spec.fp ? json(std::string(fp_format_name(*spec.fp))) : json(nullptr)}}
      .dump();
}

ActQuantSpec spec_from(const std::string& settings) {
  const json j = json::parse(settings);
  const std::string granularity = j.at("granularity").get<std::string>();
  CALQ_CHECK(granularity == "per_token" || granularity == "per_tensor",
             "activation quantizer granularity \"{}\"; expected per_token or per_tensor", granularity);
  return ActQuantSpec(j.at("bits").get<int>(), j.at("sym").get<bool>(),
                      granularity == "per_tensor" ? ActGranularity::PerTensor : ActGranularity::PerToken,
                      j.at("fp").is_null()
                          ? std::nullopt
                          : std::optional<FpFormat>(parse_fp_format(j.at("fp").get<std::string>())));
}

}  // namespace

void InputQuant::apply(const Linear&, LinearFlow& flow) const {
  const at::Tensor& x = flow.input;
  const at::Tensor q = scale.defined() ? fake_quantize_activations(x.detach(), spec, scale)
                                       : fake_quantize_activations(x.detach(), spec);
  flow.input = straight_through(q, x);
}

ExtensionState InputQuant::save() const {
  ExtensionState state{spec_settings(spec), {}};
  if (scale.defined()) state.tensors["scale"] = scale;
  return state;
}

std::shared_ptr<const LinearExtension> InputQuant::load(const ExtensionState& state) {
  const auto it = state.tensors.find("scale");
  return std::make_shared<InputQuant>(spec_from(state.settings),
                                      it == state.tensors.end() ? at::Tensor() : it->second);
}

void OutputQuant::apply(const Linear& linear, LinearFlow& flow) const {
  flow.output = straight_through(quantize_output(flow.output.detach(), spec, linear.output_parts),
                                 flow.output);
}

ExtensionState OutputQuant::save() const { return {spec_settings(spec), {}}; }

std::shared_ptr<const LinearExtension> OutputQuant::load(const ExtensionState& state) {
  return std::make_shared<OutputQuant>(spec_from(state.settings));
}

}  // namespace calq::core
