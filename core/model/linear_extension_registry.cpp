#include "core/model/linear_extension_registry.h"

#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/model/activation_quant_extensions.h"
#include "core/model/int8_matmul.h"
#include "core/model/low_rank.h"

namespace calq::core {
namespace {

using Loader = std::shared_ptr<const LinearExtension> (*)(const ExtensionState&);

struct ExtensionKind {
  std::string_view kind;
  Loader load;
};

// One row per kind: a plain list, no self-registration (docs/architecture.md §4.1).
constexpr ExtensionKind kExtensionKinds[] = {
    {InputQuant::kKind, &InputQuant::load},
    {OutputQuant::kKind, &OutputQuant::load},
    {Int8Matmul::kKind, &Int8Matmul::load},
    {LowRank::kKind, &LowRank::load},
};

}  // namespace

std::shared_ptr<const LinearExtension> load_linear_extension(std::string_view kind,
                                                             const ExtensionState& state) {
  std::string known;
  for (const ExtensionKind& row : kExtensionKinds) {
    if (row.kind != kind) {
      known += fmt::format("{}{}", known.empty() ? "" : ", ", row.kind);
      continue;
    }
    try {
      return row.load(state);
    } catch (const nlohmann::json::exception& e) {
      throw Error(fmt::format("linear extension {}: settings {}: {}", kind, state.settings, e.what()));
    } catch (const Error& e) {
      throw Error(fmt::format("linear extension {}: {}", kind, e.what()));
    }
  }
  throw Error(fmt::format("linear extension kind \"{}\" is unknown; expected one of {}", kind, known));
}

}  // namespace calq::core
