// `calq run` as a function over the library entry point run::run_recipe (run/run.h): `calq
// sweep` runs many. The CLI's part: the default output folder, --resume, printing perplexities.
#pragma once

#include <string>
#include <vector>

#include "run/run.h"

namespace CLI {
class App;
}

namespace calq::algorithms {
struct ResolvedRecipe;
}

namespace calq::cli {

struct RunRequest {
  std::string recipe;
  std::vector<std::string> overrides;  ///< --set key.path=value, in order
  run::RunOptions options;             ///< options.out empty: out/<recipe name>
};

/// The run `calq run --resume DIR` continues (run::resumed_run): the recipe, overrides and
/// options DIR/resume/run.json recorded, with out = DIR.
RunRequest resumed_request(const std::string& dir);

/// Resolves the recipe and runs it; writes out/report.json.
int run_recipe(const RunRequest& request);

/// Runs an already resolved recipe (`calq sweep` resolves each once), printing each perplexity.
int run_resolved(const algorithms::ResolvedRecipe& recipe, run::RunOptions options);

/// --cache DIR, --cache-limit SIZE and --no-cache on a command that runs recipes. `default_dir`
/// (may be empty) is used unless --no-cache.
void add_cache_options(CLI::App& cmd, RunRequest& request, std::string default_dir = {});

}  // namespace calq::cli
