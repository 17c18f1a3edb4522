#include "cli/bounds.h"

#include <cerrno>
#include <cstdlib>
#include <limits>
#include <string>

#include <fmt/format.h>

namespace calq::cli {
namespace {

// CLI11 validators return "" when the value passes, else the message shown after "--name: ".
CLI::Validator integer_range(int64_t min, int64_t max, std::string expected) {
  return CLI::Validator(
      [min, max, expected](std::string& value) -> std::string {
        errno = 0;
        char* end = nullptr;
        const long long parsed = std::strtoll(value.c_str(), &end, 10);
        const bool integer = !value.empty() && end != nullptr && *end == '\0' && errno == 0;
        if (integer && parsed >= min && parsed <= max)
          return {};
        return fmt::format("\"{}\" is not {}", value, expected);
      },
      expected);
}

}  // namespace

CLI::Validator at_least(int64_t min) {
  return integer_range(min, std::numeric_limits<int64_t>::max(),
                       fmt::format("an integer of at least {}", min));
}

CLI::Validator in_range(int64_t min, int64_t max) {
  return integer_range(min, max, fmt::format("an integer in {}..{}", min, max));
}

}  // namespace calq::cli
