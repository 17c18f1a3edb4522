#include "core/eval/non_finite_stage.h"

#include <ATen/core/grad_mode.h>
#include <string_view>

#include <ATen/ATen.h>
#include <fmt/format.h>

#include "core/model/model.h"
#include "core/numeric_guard.h"

namespace calq::core {
namespace {

std::string label(const std::string& source, int64_t layer, std::string_view uniform) {
  return source.empty() ? fmt::format("layer {} {}", layer, uniform) : source;
}

/// What feeds a linear's input: its block's norm, attention's softmax·v, or the MLP activation.
/// What computed the linear's input, as its family's schema says.
std::string producer_of(DecoderLayer& layer, const LayerSchema& schema, int64_t i,
                        std::string_view linear) {
  const LinearSpec& spec = schema.linear(linear);
  if (!spec.input_norm.empty())
    return label(layer.norm(spec.input_norm).source, i, spec.input_norm) + " output";
  if (spec.role == LinearRole::Output)
    return fmt::format("layer {} attention (softmax(q·kᵀ)·v) output", i);
  return fmt::format("layer {} MLP activation (the input of {})", i, linear);
}

const char* dtype_name(c10::ScalarType t) {
  return t == at::kHalf ? "float16" : t == at::kBFloat16 ? "bfloat16" : t == at::kFloat ? "float32"
                                                                                       : "float64";
}

/// Why a linear's output went non-finite: its own tensors, or an overflow of finite values.
std::string linear_hint(const Linear& l, const std::string& name) {
  const int64_t w = count_non_finite(l.weight), b = count_non_finite(l.bias);
  if (w > 0) return fmt::format("the weights at {}.weight contain {} NaN/Inf", name, w);
  if (b > 0) return fmt::format("the bias at {}.bias contains {} NaN/Inf", name, b);
  return fmt::format("its weight and input are finite: the product overflows {} (weight "
                     "|max| {:.3g})", dtype_name(l.weight.scalar_type()),
                     l.weight.abs().max().item<double>());
}

}  // namespace

std::string describe_non_finite_stage(Model& model, const at::Tensor& ids, int64_t window) {
  at::NoGradGuard no_grad;
  const std::string at_window = fmt::format("(first at window {}); expected finite activations",
                                            window);
  ForwardContext ctx = model.make_context(ids.size(-1));
  at::Tensor hidden = model.embed(ids);
  if (count_non_finite(hidden) > 0)
    return fmt::format("embedding output is non-finite {} — the embedding rows of this window's "
                       "tokens (or the position table) contain NaN/Inf", at_window);
  for (int64_t i = 0; i < model.n_layers(); ++i) {
    DecoderLayer& layer = model.layer(i);
    std::string first;  // the first non-finite stage inside the layer, as the observer saw it
    ctx.observer = [&](int64_t, std::string_view name, const at::Tensor& x) {
      if (!first.empty()) return;
      const Linear& l = layer.linear(name);
      const std::string where = label(l.source, i, name);
      if (count_non_finite(x) > 0) {
        first = fmt::format("{} is non-finite {} — it is the input of {}",
                            producer_of(layer, model.layer_schema(i), i, name), at_window, where);
      } else if (count_non_finite(l.forward(x)) > 0) {
        first = fmt::format("{} output is non-finite {} — {}", where, at_window,
                            linear_hint(l, where));
      }
    };
    const at::Tensor out = layer.forward(hidden, ctx);
    if (!first.empty()) return first;
    if (count_non_finite(out) > 0)
      return fmt::format("layer {} output is non-finite {} — every linear's output is finite: the "
                         "residual stream overflows {}", i, at_window,
                         dtype_name(out.scalar_type()));
    hidden = out;
  }
  const at::Tensor logits = model.logits(hidden);
  if (count_non_finite(logits) > 0)
    return fmt::format("final norm and head output (the logits) is non-finite {} — the last "
                       "layer's output is finite", at_window);
  return fmt::format("log-softmax of finite logits (|max| {:.3g}) is non-finite {}",
                     logits.abs().max().item<double>(), at_window);
}

}  // namespace calq::core
