// `calq run RECIPE.yaml`: parses the arguments, resolves the recipe and hands it to
// run::run_recipe (run/run.h), which loads, quantizes, exports, evaluates and writes
// DIR/report.json (docs/architecture.md §2, §8); this file prints each perplexity on stdout.
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include <CLI/CLI.hpp>

#include "algorithms/resolved_recipe.h"
#include "calib/stats_cache.h"
#include "cli/bounds.h"
#include "cli/commands.h"
#include "cli/local_launch.h"
#include "cli/run_recipe.h"
#include "core/error.h"
#include "core/eval/perplexity.h"
#include "run/run_state.h"

namespace calq::cli {

namespace fs = std::filesystem;

RunRequest resumed_request(const std::string& dir) {
  run::ResumedRun resumed = run::resumed_run(dir);
  return RunRequest{std::move(resumed.recipe), std::move(resumed.overrides),
                    std::move(resumed.options)};
}

int run_resolved(const algorithms::ResolvedRecipe& recipe, run::RunOptions options) {
  options.on_perplexity = [](const core::PerplexityResult& r) {
    std::printf("%s: ppl %.4f (seqlen %lld, %lld tokens, %lld windows)\n", r.dataset.c_str(),
                r.ppl, static_cast<long long>(r.seqlen), static_cast<long long>(r.tokens),
                static_cast<long long>(r.windows));
    std::fflush(stdout);
  };
  run::run_recipe(recipe, options);
  return 0;
}

int run_recipe(const RunRequest& request) {
  // Resolving builds the passes once: their option errors come before any heavy work.
  const algorithms::ResolvedRecipe recipe =
      algorithms::load_resolved_recipe(request.recipe, request.overrides);
  run::RunOptions options = request.options;
  if (options.out.empty())
    options.out = (fs::path("out") / fs::path(request.recipe).stem()).string();
  return run_resolved(recipe, std::move(options));
}

void add_cache_options(CLI::App& cmd, RunRequest& request, std::string default_dir) {
  request.options.cache_dir = std::move(default_dir);
  cmd.add_option("--cache", request.options.cache_dir,
                 "Calibration cache folder: layer statistics are reused across runs")
      ->capture_default_str();
  cmd.add_option_function<std::string>(
         "--cache-limit",
         [&request](const std::string& text) {
           request.options.cache_max_bytes = calib::parse_byte_size(text, "--cache-limit");
         },
         "Bound on the cache folder's size, e.g. 512M, 2G (least recently used go first)")
      ->default_str("2G");
  cmd.add_flag("--no-cache", request.options.no_cache, "Neither read nor write the calibration cache");
}

CommandRunner add_run_command(CLI::App& app) {
  auto args = std::make_shared<RunRequest>();
  CLI::App* cmd = app.add_subcommand("run", "Quantize (and evaluate) as a recipe says");
  cmd->add_option("recipe", args->recipe, "Recipe YAML (not with --resume)");
  auto resume = std::make_shared<std::string>();
  cmd->add_option("--resume", *resume,
                  "Continue the killed run whose output folder is DIR, after its last complete "
                  "layer (same recipe and options, read from DIR/resume/run.json)");
  cmd->add_flag("--no-resume-state", args->options.no_resume_state,
                "Keep no per-layer state in <out>/resume (saves disk; the run cannot be resumed)");
  cmd->add_option("--set", args->overrides, "Override a recipe key: key.path=value (repeatable)");
  cmd->add_option("--out", args->options.out, "Output directory (default out/<recipe name>)");
  cmd->add_flag("--overwrite", args->options.overwrite,
                "Replace --out and save.path even if they hold files calq did not write (a file "
                "is never replaced)");
  cmd->add_option("--batch-size", args->options.batch_size, "Windows per forward")->capture_default_str()
      ->check(at_least(1));
  cmd->add_flag("--stream", args->options.stream,
                "Bounded memory: write each layer to the recipe's save path as soon as it is "
                "quantized, then free it (evaluation reads the checkpoint)");
  cmd->add_option("--logits", args->options.logits,
                  "Write the first eval text's windows (input_ids) and the quantized model's "
                  "float32 logits on them to this safetensors file");
  add_cache_options(*cmd, *args);
  auto nproc = std::make_shared<int>(1);
  cmd->add_option("--nproc", *nproc,
                  "Run as N ranks on this machine (Gloo over loopback; calibration windows and "
                  "evaluation sharded): the same as torchrun --nproc-per-node N calq run ...")
      ->check(at_least(1));
  return [args, resume, nproc] {
    if (const std::optional<int> code = launch_if_asked(*nproc)) return *code;
    if (resume->empty()) {
      CALQ_CHECK(!args->recipe.empty(), "calq run: expected a recipe YAML, or --resume DIR");
      return run_recipe(*args);
    }
    CALQ_CHECK(args->recipe.empty() && args->overrides.empty() && args->options.out.empty(),
               "calq run --resume {}: the recipe, --set and --out come from the interrupted run; "
               "expected --resume DIR alone", *resume);
    return run_recipe(resumed_request(*resume));
  };
}

}  // namespace calq::cli
