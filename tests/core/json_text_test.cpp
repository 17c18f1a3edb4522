// Bounded JSON reading (core/io/json_text.h): the depth limit, bounded quotes, and the
// whole-file reader's refusal of what is not a regular file.
#include <filesystem>
#include <fstream>
#include <string>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/io/json_text.h"
#include "core/io/small_file.h"
#include "tests/support/error_of.h"
#include "tests/support/temp_dir.h"

namespace {

using calq::core::kMaxJsonDepth;
using calq::core::parse_json_bounded;
using calq::core::quote_json;
using Catch::Matchers::Contains;

std::string nested(int levels) { return std::string(levels, '[') + std::string(levels, ']'); }

using calq::test::error_of;

}  // namespace

TEST_CASE("JSON nests up to the limit and is refused beyond it, naming the file",
          "[core][json]") {
  CHECK(parse_json_bounded(nested(kMaxJsonDepth), "f.json").is_array());
  CHECK_THAT(error_of([] { parse_json_bounded(nested(kMaxJsonDepth + 1), "f.json"); }),
             Contains("f.json: the file nests deeper than 64 levels"));
  CHECK_THAT(error_of([] { parse_json_bounded(nested(200000), "f.json", {"header", "x"}); }),
             Contains("f.json: the header nests deeper than 64 levels; expected x"));
  CHECK_THAT(error_of([] { parse_json_bounded("{\"a\":1,\"a\":2}", "f.json", {"index", "x", true}); }),
             Contains("duplicate key \"a\" in the index"));
  CHECK(parse_json_bounded("{\"a\":1,\"a\":2}", "f.json").at("a") == 2);  // nlohmann's default
  // nlohmann's own message is kept, escaped and cut.
  const std::string bad = error_of([] { parse_json_bounded("[\"" + std::string(10000, 'x'), "f.json"); });
  CHECK_THAT(bad, Contains("f.json: the file is not valid JSON"));
  CHECK(bad.size() < 400);
}

TEST_CASE("quote_json shows at most the asked characters, escaped, on any value",
          "[core][json]") {
  CHECK(quote_json(nlohmann::json(4)) == "4");
  CHECK(quote_json(nlohmann::json::parse("{\"a\":[1,2]}")) == "{\"a\":[1,2]}");
  const std::string wide = quote_json(nlohmann::json(std::vector<int>(10000, 7)), 20);
  CHECK(wide == "[7,7,7,7,7,7,7,7,7,7...");
  CHECK(quote_json(nlohmann::json(std::string(1 << 20, 'y'))).size() <= 83);
  CHECK(quote_json(nlohmann::json("a\x1b[31m\n")) == "\"a\\u001b[31m\\n\"");
  CHECK(quote_json(nlohmann::json(std::string("\xff\xfe", 2))) == "\"\\ufffd\\ufffd\"");
  // A value built in code may nest deeper than any parsed one: still no deep recursion.
  nlohmann::json deep = 1;
  for (int i = 0; i < 100000; ++i) deep = nlohmann::json::array({std::move(deep)});
  CHECK(quote_json(deep, 300).size() <= 303);
  CHECK(calq::core::quote_string(std::string(500, 'z'), 10) == "\"zzzzzzzzz...");
}

TEST_CASE("read_small_file names what a path is when it is not a regular file",
          "[core][json]") {
  calq::test::TempDir dir;
  CHECK_THAT(error_of([&] { calq::core::read_small_file((dir / "none").string(), "a config"); }),
             Contains("none: missing; expected a config"));
  CHECK_THAT(error_of([&] { calq::core::read_small_file(dir.path().string(), "a config"); }),
             Contains(": a directory; expected a config"));
  CHECK_THAT(error_of([] { calq::core::read_small_file("/dev/zero", "a config"); }),
             Contains("/dev/zero: a character device; expected a config"));
  std::filesystem::create_symlink("/dev/zero", dir / "zero");
  CHECK_THAT(error_of([&] { calq::core::read_small_file((dir / "zero").string(), "x"); }),
             Contains("a character device"));
  std::ofstream(dir / "big") << std::string(100, 'b');
  CHECK_THAT(error_of([&] { calq::core::read_small_file((dir / "big").string(), "x", 10); }),
             Contains("big: 100 bytes; expected x of at most 10 bytes"));
  CHECK(calq::core::read_small_file((dir / "big").string(), "x").size() == 100);
}
