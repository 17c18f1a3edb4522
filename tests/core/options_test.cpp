// Tests for core/options: typed getters, defaults, constraint helpers, unknown-key checks with
// did-you-mean, and the resolved JSON, on Options built from JSON text (no recipe file).
#include "core/options.h"

#include <functional>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "core/error.h"

namespace {

using calq::core::Options;
using Catch::Matchers::Contains;
using Catch::Matchers::Equals;

Options gptq_options(const std::string& json) {
  return Options::from_json(json, "recipe.yaml", "passes.0.gptq");
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const calq::Error& e) {
    return e.what();
  }
  FAIL("expected calq::Error");
  return "";
}

}  // namespace

TEST_CASE("Options getters return given values and defaults for absent or null keys",
          "[core][recipe][options]") {
  const Options o = gptq_options(
      R"({"block_size": 64, "damp": 0.02, "act_order": true, "name": "x", "alpha": 1,
          "skip": null, "targets": ["attn.*", "mlp.*"]})");
  CHECK(o.get_int("block_size", 128) == 64);
  CHECK(o.get_double("damp", 0.01) == Approx(0.02));
  CHECK(o.get_double("alpha", 0.5) == 1.0);  // an integer is a number
  CHECK(o.get_bool("act_order", false));
  CHECK(o.get_string("name", "y") == "x");
  CHECK(o.get_int("skip", 7) == 7);  // null = absent
  CHECK(o.get_int("missing", 3) == 3);
  CHECK(o.get_strings("targets", {}) == std::vector<std::string>{"attn.*", "mlp.*"});
  CHECK(o.find_int("missing") == std::nullopt);
  CHECK(o.find_bool("act_order") == true);
  CHECK(o.has("damp"));
  CHECK_FALSE(o.has("skip"));
  CHECK(o.keys() == std::vector<std::string>{"block_size", "damp", "act_order", "name", "alpha",
                                             "skip", "targets"});
  CHECK_NOTHROW(o.finish());
}

TEST_CASE("Options names the file and key path on a wrong type", "[core][recipe][options]") {
  const Options o = gptq_options(R"({"damp": "abc", "block_size": 4.0, "act_order": "yes"})");
  CHECK_THROWS_WITH(o.get_double("damp", 0.01),
                    Equals("recipe.yaml: passes.0.gptq.damp: expected a number, got \"abc\""));
  CHECK_THROWS_WITH(o.get_int("block_size", 128),
                    Equals("recipe.yaml: passes.0.gptq.block_size: expected an integer, got 4.0"));
  CHECK_THROWS_WITH(o.get_bool("act_order", false),
                    Equals("recipe.yaml: passes.0.gptq.act_order: expected true or false, got "
                           "\"yes\""));
  CHECK_THROWS_WITH(o.get_strings("damp", {}), Contains("passes.0.gptq.damp: expected a list"));
  CHECK_THROWS_WITH(o.child("damp"),
                    Equals("recipe.yaml: passes.0.gptq.damp: expected a mapping, got \"abc\""));
  CHECK_THROWS_WITH(o.require_int("groups"),
                    Equals("recipe.yaml: passes.0.gptq.groups: missing; expected an integer"));
}

TEST_CASE("Options constraint helpers reject values outside the allowed set or range",
          "[core][recipe][options]") {
  const Options o = Options::from_json(R"({"bits": 5, "n": 0, "alpha": 1.5, "grid": "gtpq"})",
                                       "recipe.yaml", "scheme.weights");
  CHECK_THROWS_WITH(
      o.get_int_in("bits", 4, {2, 3, 4, 8}),
      Equals("recipe.yaml: scheme.weights.bits: 5 is not supported; expected one of 2, 3, 4, 8"));
  CHECK_THROWS_WITH(o.get_int_at_least("n", 1, 1),
                    Equals("recipe.yaml: scheme.weights.n: 0 is out of range; expected an "
                           "integer >= 1"));
  CHECK_THROWS_WITH(o.get_int_in_range("n", 1, 1, 10), Contains("expected an integer in [1, 10]"));
  CHECK_THROWS_WITH(o.get_double_in_range("alpha", 0.5, 0.0, 1.0),
                    Contains("scheme.weights.alpha: 1.5 is out of range; expected a number in"));
  CHECK_THROWS_WITH(o.get_string_in("grid", "gptq", {"gptq", "ct"}),
                    Equals("recipe.yaml: scheme.weights.grid: \"gtpq\" is not supported; "
                           "expected one of gptq, ct"));
  CHECK(o.get_int_in("absent", 4, {2, 3, 4, 8}) == 4);
}

TEST_CASE("Options::finish rejects unread keys with a did-you-mean over the known keys",
          "[core][recipe][options]") {
  SECTION("a close typo gets a suggestion") {
    const Options o = gptq_options(R"({"blok_size": 64, "damp": 0.01})");
    o.get_int("block_size", 128);
    o.get_double("damp", 0.01);
    CHECK_THROWS_WITH(o.finish(), Equals("recipe.yaml: passes.0.gptq.blok_size: unknown key; did "
                                         "you mean \"block_size\"?"));
  }
  SECTION("a transposition counts as one edit") {
    const Options o = gptq_options(R"({"bist": 4})");
    o.declare({"bits", "sym"});
    CHECK_THROWS_WITH(o.finish(), Contains("bist: unknown key; did you mean \"bits\"?"));
  }
  SECTION("a key far from every known key lists them") {
    const Options o = gptq_options(R"({"zzzzzz": 1})");
    o.declare({"damp", "act_order"});
    CHECK_THROWS_WITH(o.finish(), Equals("recipe.yaml: passes.0.gptq.zzzzzz: unknown key; "
                                         "expected one of act_order, damp"));
  }
  SECTION("a section that reads nothing says so") {
    const Options o = gptq_options(R"({"alpha": 1})");
    CHECK_THROWS_WITH(o.finish(), Contains("passes.0.gptq.alpha: unknown key; this section takes "
                                           "no keys"));
  }
  SECTION("copies of a view share what was read") {
    const Options o = gptq_options(R"({"damp": 0.1})");
    const Options copy = o;
    copy.get_double("damp", 0.01);
    CHECK_NOTHROW(o.finish());
  }
}

TEST_CASE("Options children and lists carry their key paths", "[core][recipe][options]") {
  const Options root = Options::from_json(
      R"({"scheme": {"weights": {"bits": "x"}}, "activations": null,
          "eval": {"perplexity": [{"data": "a"}, {"seqlen": "b"}, 3]}})",
      "recipe.yaml");
  const Options weights = root.child("scheme").child("weights");
  CHECK(weights.key_path() == "scheme.weights");
  CHECK(weights.file() == "recipe.yaml");
  CHECK_THROWS_WITH(weights.get_int("bits", 4), Contains("recipe.yaml: scheme.weights.bits:"));
  CHECK_FALSE(root.find_child("activations").has_value());
  CHECK(root.child("absent").get_int("k", 1) == 1);
  CHECK_THROWS_WITH(root.child("eval").get_list_of_maps("perplexity"),
                    Equals("recipe.yaml: eval.perplexity.2: expected a mapping, got 3"));
  const Options list_root =
      Options::from_json(R"({"items": [{"a": 1}, {"b": "x"}]})", "f.yaml", "top");
  const auto items = list_root.get_list_of_maps("items");
  REQUIRE(items.size() == 2);
  CHECK(items[0].get_int("a", 0) == 1);
  CHECK_THROWS_WITH(items[1].get_int("b", 0),
                    Contains("f.yaml: top.items.1.b: expected an integer"));
  CHECK_THROWS_WITH(items[1].fail("b", "custom {}", 7), Equals("f.yaml: top.items.1.b: custom 7"));
}

TEST_CASE("Options::to_json_string returns the given values plus the defaults read",
          "[core][recipe][options]") {
  const Options o = gptq_options(R"({"damp": 0.02, "nested": {"x": 1}})");
  o.get_double("damp", 0.01);
  o.get_int("block_size", 128);
  o.get_bool("act_order", false);
  o.child("nested").get_int("y", 2);
  o.child("fresh").get_string("z", "w");
  CHECK(o.to_json_string() ==
        R"({"damp":0.02,"nested":{"x":1,"y":2},"block_size":128,"act_order":false,)"
        R"("fresh":{"z":"w"}})");
  CHECK_FALSE(o.has("block_size"));  // defaults do not count as given
  CHECK(Options().to_json_string() == "{}");
}

TEST_CASE("Options::from_json rejects text that is not a JSON object", "[core][recipe][options]") {
  CHECK_THROWS_WITH(Options::from_json("[1, 2]", "cli", "bench"),
                    Equals("cli: bench: expected a mapping, got a list"));
  CHECK_THROWS_WITH(Options::from_json("{", "cli"), Contains("cli: not valid JSON"));
  CHECK_NOTHROW(Options::from_json("null", "cli").finish());
  CHECK(error_of([] { Options().fail("", "boom"); }) == "boom");
}
