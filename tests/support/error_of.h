// The message of the calq::Error a call throws, or "" when it returns: for CHECK_THAT on
// error lines without CHECK_THROWS_WITH's matcher plumbing.
#pragma once

#include <functional>
#include <string>

#include "core/error.h"

namespace calq::test {

inline std::string error_of(const std::function<void()>& call) {
  try {
    call();
  } catch (const calq::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace calq::test
