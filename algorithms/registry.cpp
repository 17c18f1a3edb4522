#include "algorithms/registry.h"

#include <functional>
#include <utility>

#include <fmt/ranges.h>

#include "algorithms/gptq.h"
#include "algorithms/rtn.h"
#include "core/did_you_mean.h"
#include "core/error.h"
#include "core/options.h"

namespace calq::algorithms {
namespace {

using Builder = std::function<std::unique_ptr<Pass>(const core::Options&)>;

// The one list of passes: adding an algorithm is one line here.
const std::vector<std::pair<std::string, Builder>>& builtin_passes() {
  static const std::vector<std::pair<std::string, Builder>> passes = {
      {"rtn", make_rtn},
      {"gptq", make_gptq},
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
                                const core::SchemeSection&) {
  for (const auto& [known, builder] : builtin_passes()) {
    if (known == name) return builder(options);
  }
  const std::string suggestion = core::closest_match(name, pass_names());
  fail("{}: unknown pass \"{}\"{}; expected one of: {}", options.where(), name,
       suggestion.empty() ? "" : fmt::format("; did you mean \"{}\"?", suggestion),
       fmt::format("{}", fmt::join(pass_names(), ", ")));
}

}  // namespace calq::algorithms
