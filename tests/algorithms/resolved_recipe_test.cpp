// parse → resolve → hash (algorithms/resolved_recipe.h): the resolved recipe holds every pass
// default, and neither its hash nor the parsed recipe's depends on whether passes were built.
#include <fstream>
#include <string>

#include <catch2/catch.hpp>

#include "algorithms/pipeline.h"
#include "algorithms/resolved_recipe.h"
#include "core/recipe.h"
#include "tests/support/temp_dir.h"

using Catch::Matchers::Contains;

TEST_CASE("resolving a recipe fills pass defaults without touching the parsed recipe",
          "[algorithms][recipe]") {
  calq::test::TempDir dir("calq_resolve");
  std::ofstream(dir / "recipe.yaml") << "model: {path: model}\n"
                                        "passes:\n  - awq: {}\n  - gptq: {damp: 0.02}\n";
  const std::string path = (dir / "recipe.yaml").string();
  const calq::core::Recipe parsed = calq::core::load_recipe(path, {"passes.1.gptq.damp=0.03"});
  const std::string parsed_json = parsed.resolved_json();

  const calq::algorithms::ResolvedRecipe resolved = calq::algorithms::resolve_recipe(parsed);
  CHECK(parsed.resolved_json() == parsed_json);
  CHECK(resolved.hash == resolved.recipe.hash_hex());
  CHECK_THAT(resolved.recipe.resolved_json(), Contains(R"("damp":0.03)") &&
                                                  Contains(R"("block_size":128)"));
  // The defaults became given values; --set still shows in errors.
  CHECK(resolved.recipe.passes[1].options.has("block_size"));
  CHECK_THAT(resolved.recipe.passes[1].options.where("damp"), Contains("(from --set)"));

  // Building passes (from either recipe) changes no hash: calq run and calq sweep agree.
  calq::algorithms::build_passes(parsed);
  calq::algorithms::build_passes(resolved.recipe);
  CHECK(parsed.resolved_json() == parsed_json);
  CHECK(resolved.recipe.hash_hex() == resolved.hash);
  CHECK(calq::algorithms::resolve_recipe(parsed).hash == resolved.hash);
  CHECK(calq::algorithms::load_resolved_recipe(path, {"passes.1.gptq.damp=0.03"}).hash ==
        resolved.hash);
}
