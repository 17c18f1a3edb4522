#include "core/shape_text.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace calq::core {

std::string shape_text(c10::ArrayRef<int64_t> sizes) {
  return fmt::format("[{}]", fmt::join(sizes.begin(), sizes.end(), ", "));
}

}  // namespace calq::core
