// Locating ../shared/data for tests tagged [data]. When the folder is missing the test warns and
// returns, except under CI=true where a missing folder is a failure (the data must be there).
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>

#include <catch2/catch.hpp>

namespace calq::test {

/// The shared data root: $CALQ_SHARED_DATA, else <source>/../shared/data.
inline std::filesystem::path shared_data_root() {
  if (const char* env = std::getenv("CALQ_SHARED_DATA")) return env;
  return std::filesystem::path(CALQ_SOURCE_DIR) / ".." / "shared" / "data";
}

inline bool running_in_ci() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && std::string(ci) != "" && std::string(ci) != "false" && std::string(ci) != "0";
}

}  // namespace calq::test

// Yields the path of `rel` under the shared data root, or returns from the test (WARN) when it
// is missing; under CI=true a missing file FAILs instead.
#define CALQ_REQUIRE_SHARED(var, rel)                                                     \
  const std::filesystem::path var = ::calq::test::shared_data_root() / (rel);              \
  if (!std::filesystem::exists(var)) {                                                    \
    if (::calq::test::running_in_ci()) FAIL("shared data missing under CI: " << var);     \
    WARN("SKIPPED: shared data missing: " << var);                                        \
    return;                                                                               \
  }
