// The loaders of every linear extension kind (docs/architecture.md §4.1), keyed by kind name:
// what a layer checkpoint's restore calls for each saved extension. A new kind adds one row in
// linear_extension_registry.cpp.
#pragma once

#include <memory>
#include <string_view>

#include "core/model/linear_extension.h"

namespace calq::core {

/// Rebuilds an extension from what its save() returned; throws calq::Error for an unknown kind
/// (listing the known ones) or settings its kind cannot read.
std::shared_ptr<const LinearExtension> load_linear_extension(std::string_view kind,
                                                             const ExtensionState& state);

}  // namespace calq::core
