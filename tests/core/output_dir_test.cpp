// The output-path rules (core/io/output_dir.h) at the library level; the CLI cases are in
// tests/cli/hostile_input_test.sh and the property is fuzzed (tests/fuzz/fuzz_output_path.cpp).
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>

#include <catch2/catch.hpp>

#include "core/error.h"
#include "core/io/output_dir.h"
#include "tests/support/error_of.h"
#include "tests/support/temp_dir.h"

namespace {

namespace fs = std::filesystem;
using namespace calq::core;
using Catch::Matchers::Contains;

using calq::test::error_of;

}  // namespace

TEST_CASE("an output directory is new, empty, calq's own or overwritten by request, never a file",
          "[core][output]") {
  calq::test::TempDir dir;
  CHECK(error_of([&] { check_output_dir(dir / "new", "save.path", false); }).empty());
  fs::create_directories(dir / "empty");
  CHECK(error_of([&] { check_output_dir(dir / "empty", "save.path", false); }).empty());
  fs::create_directories(dir / "user");
  std::ofstream(dir / "user/thesis.txt") << "mine";
  CHECK_THAT(error_of([&] { check_output_dir(dir / "user", "save.path", false); }),
             Contains("user holds files calq did not write"));
  CHECK(error_of([&] { check_output_dir(dir / "user", "save.path", true); }).empty());
  write_output_marker(dir / "user", "export");
  CHECK(error_of([&] { check_output_dir(dir / "user", "save.path", false); }).empty());
  std::ofstream(dir / "file") << "x";
  CHECK_THAT(error_of([&] { check_output_dir(dir / "file", "--out", true); }),
             Contains("file exists and is not a directory; calq never replaces a file"));
  fs::create_directory_symlink(dir / "user", dir / "link");
  CHECK_THAT(error_of([&] { check_output_dir(dir / "link", "--out", true); }),
             Contains("link is a symbolic link"));
}

TEST_CASE("output paths that name the root, '.', '..' or the working directory are refused",
          "[core][output]") {
  CHECK_THAT(error_of([] { output_dir_path("/", "save.path"); }), Contains("file-system root"));
  CHECK_THAT(error_of([] { output_dir_path("", "save.path"); }), Contains("save.path: empty"));
  CHECK_THAT(error_of([] { output_dir_path(".", "save.path"); }), Contains("working directory"));
  CHECK_THAT(error_of([] { output_dir_path("..", "save.path"); }), Contains("working directory"));
  CHECK_THAT(error_of([] { output_dir_path("x/..", "save.path"); }), Contains("working directory"));
  CHECK(output_dir_path("a/b/", "save.path") == fs::absolute("a/b").lexically_normal());
}

TEST_CASE("an output never equals or contains an input", "[core][output]") {
  calq::test::TempDir dir;
  fs::create_directories(dir / "models/llama");
  const std::vector<RunInput> inputs = {{(dir / "models/llama").string(), "model.path"}};
  CHECK_THAT(error_of([&] { check_output_apart(dir / "models/llama", "save.path", inputs); }),
             Contains("llama is model.path"));
  CHECK_THAT(error_of([&] { check_output_apart(dir / "models", "save.path", inputs); }),
             Contains("models contains model.path"));
  CHECK(error_of([&] { check_output_apart(dir / "models/llama-w4", "save.path", inputs); }).empty());
  CHECK(error_of([&] { check_output_apart(dir / "models/llama/q", "save.path", inputs); }).empty());
}

TEST_CASE("a claim locks its output, and undoes what it created unless kept", "[core][output]") {
  calq::test::TempDir dir;
  {
    OutputClaim claim(dir / "a/b/run", "--out", /*create_dir=*/true);
    CHECK(fs::exists(dir / "a/b/run" / kOutputMarker));
    CHECK(fs::exists(dir / "a/b/.run.calq-lock"));
    CHECK_THAT(error_of([&] { OutputClaim second(dir / "a/b/run", "--out", true); }),
               Contains("is being written by another calq process"));
  }
  CHECK(!fs::exists(dir / "a"));  // nothing kept: the folders it made are gone, and the lock
  {
    OutputClaim claim(dir / "c/run", "--out", true);
    std::ofstream(dir / "c/run/report.json") << "{}";
    claim.keep();
  }
  CHECK(fs::exists(dir / "c/run/report.json"));
  CHECK(fs::exists(dir / "c/run" / kOutputMarker));
  CHECK(!fs::exists(dir / "c/.run.calq-lock"));
  {
    // A run that wrote something and then failed keeps its marker: it can be run again there.
    OutputClaim claim(dir / "d", "--out", true);
    std::ofstream(dir / "d/plot.dat") << "1";
  }
  CHECK(fs::exists(dir / "d" / kOutputMarker));
  CHECK(error_of([&] { check_output_dir(dir / "d", "--out", false); }).empty());
}

TEST_CASE("a --json file is replaced only when calq wrote it", "[core][output]") {
  calq::test::TempDir dir;
  CHECK(error_of([&] { check_output_file((dir / "new.json").string(), "--json"); }).empty());
  std::ofstream(dir / "mine.json") << "{\"written_by\": \"calq eval\", \"ppl\": 1}";
  CHECK(error_of([&] { check_output_file((dir / "mine.json").string(), "--json"); }).empty());
  std::ofstream(dir / "notes.json") << "{\"todo\": 1}";
  CHECK_THAT(error_of([&] { check_output_file((dir / "notes.json").string(), "--json"); }),
             Contains("calq did not write it"));
  CHECK_THAT(error_of([&] { check_output_file(dir.path().string(), "--json"); }),
             Contains("is not a regular file"));
}
