// Locating test data. The repository's own data/ (sotu-llama-6L, stories260K, WikiText-2, the
// GPT-2 tokenizer, hf-fixtures; data/PROVENANCE.md) is always there: a missing file is a
// failure. Extra material that the repository does not carry (the Llama-2 tokenizer, under
// Meta's licence) is read from ../shared/data when present and skipped with a warning when not.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>

#include <catch2/catch.hpp>

namespace calq::test {

/// The repository's data root: $CALQ_DATA, else <source>/data.
inline std::filesystem::path data_root() {
  if (const char* env = std::getenv("CALQ_DATA")) return env;
  return std::filesystem::path(CALQ_SOURCE_DIR) / "data";
}

/// Extra material outside the repository: $CALQ_SHARED_DATA, else <source>/../shared/data.
inline std::filesystem::path extra_data_root() {
  if (const char* env = std::getenv("CALQ_SHARED_DATA")) return env;
  return std::filesystem::path(CALQ_SOURCE_DIR) / ".." / "shared" / "data";
}

inline bool running_in_ci() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && std::string(ci) != "" && std::string(ci) != "false" && std::string(ci) != "0";
}

}  // namespace calq::test

// Yields the path of `rel` under the repository's data/; a missing file FAILs the test (the
// repository carries it).
#define CALQ_REQUIRE_DATA(var, rel)                                                     \
  const std::filesystem::path var = ::calq::test::data_root() / (rel);              \
  if (!std::filesystem::exists(var)) FAIL("test data missing: " << var);

// Yields the path of `rel` under the extra material, or returns from the test (WARN) when it
// is absent, CI included: the repository does not carry it.
#define CALQ_REQUIRE_EXTRA(var, rel)                                                      \
  const std::filesystem::path var = ::calq::test::extra_data_root() / (rel);               \
  if (!std::filesystem::exists(var)) {                                                    \
    WARN("SKIPPED: extra material absent: " << var);                                      \
    return;                                                                               \
  }
