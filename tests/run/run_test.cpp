// run::run_recipe, the library entry point `calq run` and `calq sweep` call (run/run.h), driven
// directly on stories260K (data/stories260K, data/PROVENANCE.md): report.json is written and
// returned, its hash is the resolved recipe's, each perplexity reaches the callback.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "algorithms/resolved_recipe.h"
#include "core/eval/perplexity.h"
#include "run/run.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_data.h"

TEST_CASE("run_recipe quantizes, evaluates and writes report.json for a resolved recipe",
          "[run]") {
  calq::test::TempDir dir("calq_run");
  const std::filesystem::path data = calq::test::data_root() / "stories260K";
  std::ofstream(dir / "recipe.yaml")
      << "model: {path: " << (data / "stories260K.bin").string()
      << ", tokenizer: " << (data / "tok512.bin").string() << "}\n"
      << "calibration: {data: " << (data / "tinystories_valid_calib.txt").string()
      << ", nsamples: 4, seqlen: 32}\n"
         "scheme:\n  weights: {bits: 4, group_size: 32}\n"
         "passes:\n  - gptq: {}\n"
         "eval:\n  perplexity:\n    - {data: "
      << (data / "tinystories_valid_eval.txt").string() << ", seqlen: 64, max_windows: 2}\n";
  const calq::algorithms::ResolvedRecipe recipe =
      calq::algorithms::load_resolved_recipe((dir / "recipe.yaml").string());

  calq::run::RunOptions options;
  options.out = (dir / "out").string();
  std::vector<double> seen;
  options.on_perplexity = [&seen](const calq::core::PerplexityResult& r) { seen.push_back(r.ppl); };
  const std::string text = calq::run::run_recipe(recipe, options);

  const nlohmann::json report = nlohmann::json::parse(text);
  std::ifstream written(dir / "out" / "report.json");
  CHECK(nlohmann::json::parse(written) == report);
  CHECK(report.at("recipe_hash") == recipe.hash);
  CHECK(report.at("quantization").at("next_layer_inputs") == "quantized");
  REQUIRE(seen.size() == 1);
  const double ppl = report.at("eval").at("perplexity").at(0).at("ppl").get<double>();
  CHECK(ppl == seen[0]);
  CHECK(std::isfinite(ppl));
  CHECK(ppl > 1.0);
  CHECK_FALSE(std::filesystem::exists(dir / "out" / "resume"));  // removed when the run ends
}
