#include "algorithms/registry.h"

#include <functional>
#include <utility>

#include <fmt/ranges.h>

#include "algorithms/awq.h"
#include "algorithms/gptq.h"
#include "algorithms/lkd.h"
#include "algorithms/llm_int8.h"
#include "algorithms/qat.h"
#include "algorithms/lorc.h"
#include "algorithms/rtn.h"
#include "algorithms/smoothquant.h"
#include "core/did_you_mean.h"
#include "core/error.h"
#include "core/options.h"

namespace calq::algorithms {
namespace {

/// Passes read their options; those that depend on the scheme (AWQ's quantizer, SmoothQuant's
/// activation bits) also see it, to refuse what they cannot do before any work starts.
using Builder =
    std::function<std::unique_ptr<Pass>(const core::Options&, const core::SchemeSection&)>;

template <std::unique_ptr<Pass> (*Make)(const core::Options&)>
std::unique_ptr<Pass> options_only(const core::Options& options, const core::SchemeSection&) {
  return Make(options);
}

// The one list of passes: adding an algorithm is one line here.
const std::vector<std::pair<std::string, Builder>>& builtin_passes() {
  static const std::vector<std::pair<std::string, Builder>> passes = {
      {"rtn", options_only<make_rtn>},
      {"gptq", options_only<make_gptq>},
      {"smoothquant", make_smoothquant},
      {"awq", make_awq},
      {"llm_int8", make_llm_int8},
      {"lkd", make_lkd},
      {"qat", make_qat},
      {"lorc", make_lorc},
  };
  return passes;
}

}  // namespace

std::vector<std::string> pass_names() {
  std::vector<std::string> names;
  for (const auto& [name, builder] : builtin_passes()) names.push_back(name);
  return names;
}

std::unique_ptr<Pass> make_pass(const std::string& name, const core::Options& options,
                                const core::SchemeSection& scheme) {
  for (const auto& [known, builder] : builtin_passes()) {
    if (known == name) return builder(options, scheme);
  }
  const std::string suggestion = core::closest_match(name, pass_names());
  fail("{}: unknown pass \"{}\"{}; expected one of: {}", options.where(), name,
       suggestion.empty() ? "" : fmt::format("; did you mean \"{}\"?", suggestion),
       fmt::format("{}", fmt::join(pass_names(), ", ")));
}

}  // namespace calq::algorithms
