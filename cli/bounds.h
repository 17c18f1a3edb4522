// Range checks for integer options with readable messages. CLI11's PositiveNumber and
// NonNegativeNumber are ranges over double whose upper bound prints as DBL_MAX's 309 digits
// ("Value -1 not in range 0.000000 to 179769313486231570814527..."): issue 18, class 8e.
#pragma once

#include <cstdint>

#include <CLI/CLI.hpp>

namespace calq::cli {

/// The option's value is an integer >= `min`; otherwise "-1 is not an integer of at least 0".
CLI::Validator at_least(int64_t min);

/// The option's value is an integer in [min, max]; otherwise "1 is not an integer in 2..1048576".
CLI::Validator in_range(int64_t min, int64_t max);

}  // namespace calq::cli
