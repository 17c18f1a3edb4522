#include "run/run_outputs.h"

#include <vector>

#include "core/error.h"
#include "core/io/output_dir.h"
#include "core/recipe.h"

namespace calq::run {

namespace fs = std::filesystem;

RunOutputs check_run_outputs(const core::Recipe& recipe, const RunOptions& args) {
  std::vector<core::RunInput> inputs = {{recipe.file, "the recipe"},
                                        {recipe.model.path.resolved, "model.path"}};
  if (recipe.model.tokenizer) inputs.push_back({recipe.model.tokenizer->resolved, "model.tokenizer"});
  if (recipe.calibration) {
    inputs.push_back({recipe.calibration->data.resolved, "calibration.data"});
    if (recipe.calibration->offsets)
      inputs.push_back({recipe.calibration->offsets->resolved, "calibration.offsets"});
  }
  for (const core::PerplexityEval& e : recipe.eval.perplexity) inputs.push_back({e.data.resolved, "eval data"});
  if (!args.cache_dir.empty() && !args.no_cache) inputs.push_back({args.cache_dir, "--cache"});

  RunOutputs outputs;
  outputs.out = core::output_dir_path(args.out, "--out");
  // A resumed run's folder is calq's (it holds resume/ and the marker) whatever --overwrite said.
  core::check_output_dir(outputs.out, "--out", args.overwrite || args.resuming);
  core::check_output_apart(outputs.out, "--out", inputs);
  if (recipe.save && !args.float_only) {
    const std::string field = recipe.file + ": save.path";
    outputs.save = core::output_dir_path(recipe.save->path.resolved, field);
    core::check_output_dir(*outputs.save, field, args.overwrite);
    core::check_output_apart(*outputs.save, field, inputs);
    CALQ_CHECK(*outputs.save != outputs.out,
               "{}: {} is also the run's --out folder (report.json, resume state); expected a "
               "different directory, e.g. {}", field, outputs.save->string(),
               (outputs.out / "checkpoint").string());
  }
  return outputs;
}

}  // namespace calq::run
