#include "algorithms/pass_order.h"

#include <string>

#include <fmt/format.h>

#include "core/error.h"
#include "core/recipe.h"

namespace calq::algorithms {
namespace {

bool is_quantizer(const Pass& pass) { return pass.traits().role == PassRole::Quantizer; }

/// "passes.2.gptq"; the index past the recipe's entries is the implicit trailing rtn's.
std::string key_of(size_t index, const Pass& pass) {
  return fmt::format("passes.{}.{}", index, pass.name());
}

}  // namespace

void check_pass_order(const core::Recipe& recipe, size_t index,
                      const std::vector<std::unique_ptr<Pass>>& earlier, const Pass& pass) {
  const std::string key = recipe.file + ": " + key_of(index, pass);
  const PassTraits& traits = pass.traits();
  const Pass* quantizer = nullptr;
  for (const auto& e : earlier) {
    if (is_quantizer(*e)) quantizer = e.get();
  }
  if (traits.role == PassRole::Refinement) {
    if (quantizer == nullptr) {
      fail("{}: refines quantized weights, but no quantizing pass runs before it; expected rtn "
           "or gptq earlier in passes",
           key);
    }
    const std::string& refused = earlier.back()->traits().refuses_refinement;
    if (!refused.empty()) fail("{}: {}; expected rtn or gptq before it", key, refused);
  } else if (quantizer != nullptr) {
    fail("{}: runs after a quantizing pass ({}); expected transforms (smoothquant, awq, lkd, "
         "qat) first and exactly one quantizing pass (rtn, gptq, llm_int8) last, then only "
         "refinements (lorc)",
         key, earlier.back()->name());
  }
  if (recipe.scheme.weights.format != core::WeightFormat::Int && !traits.float_weight_formats) {
    fail("{}: works on integer grids, but scheme.weights.format is {}; expected format: int, or "
         "rtn for the floating-point formats",
         key, core::weight_format_name(recipe.scheme.weights.format));
  }
  for (const auto& e : earlier) {
    if (std::string(e->name()) == pass.name()) {
      fail("{}: appears twice; expected each transform once (a second search or smoothing would "
           "undo the first's choices)",
           key);
    }
    for (const MustPrecede& rule : traits.must_precede) {
      if (rule.pass == e->name()) {
        fail("{}: runs after {}, which {}; expected {} before {}", key, rule.pass, rule.reason,
             pass.name(), rule.pass);
      }
    }
  }
}

void check_pass_outputs(const core::Recipe& recipe,
                        const std::vector<std::unique_ptr<Pass>>& passes, bool stream) {
  for (size_t i = 0; i < passes.size(); ++i) {
    const PassTraits& traits = passes[i]->traits();
    if (recipe.save && recipe.save->format != core::SaveFormat::Fake &&
        !traits.fake_export_only.empty()) {
      fail("{}: save.format {}: {}: {}; expected save.format fake (weights only) or no save",
           recipe.file, core::save_format_name(recipe.save->format), key_of(i, *passes[i]),
           traits.fake_export_only);
    }
    if (stream && !traits.not_streamable.empty()) {
      fail("{}: {}: --stream: {}; expected a run without --stream", recipe.file,
           key_of(i, *passes[i]), traits.not_streamable);
    }
  }
}

}  // namespace calq::algorithms
