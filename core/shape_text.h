// A tensor shape as error messages write it: "[4096, 11008]".
#pragma once

#include <cstdint>
#include <string>

#include <c10/util/ArrayRef.h>

namespace calq::core {

std::string shape_text(c10::ArrayRef<int64_t> sizes);

}  // namespace calq::core
