// `calq generate`: text from a model (float, fake-quantized export, packed checkpoint, with a
// LoRA adapter) with a KV cache (core/eval/generation.h, docs/generate.md). stdout gets the
// prompt, then each new piece of text as soon as it is decoded; stderr one line of figures.
#include <ATen/ATen.h>

#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <CLI/CLI.hpp>

#include "cli/bounds.h"
#include "cli/commands.h"
#include "cli/model_flags.h"
#include "core/checkpoint/lora_adapter.h"
#include "core/error.h"
#include "core/eval/generation.h"
#include "core/log.h"
#include "core/model/model.h"
#include "core/resident_memory.h"

namespace calq::cli {
namespace {

struct GenerateArgs {
  ModelFlags model;
  std::string prompt;
  int64_t max_new_tokens = 128;
  bool greedy = false;
  double temperature = 1.0;
  int64_t top_k = 0;
  double top_p = 1.0;
  uint64_t seed = 0;
  bool sampling = false;  ///< one of --temperature --top-k --top-p --seed was given
};

double per_second(int64_t n, double seconds) { return seconds > 0 ? double(n) / seconds : 0.0; }

int run_generate(const GenerateArgs& args) {
  core::GenerateOptions options;
  options.max_new_tokens = args.max_new_tokens;
  options.sampling.greedy = !args.sampling;
  options.sampling.temperature = args.temperature;
  options.sampling.top_k = args.top_k;
  options.sampling.top_p = args.top_p;
  options.sampling.seed = args.seed;
  core::check_sampling_options(options.sampling);  // before the model loads

  auto model = core::load_model(args.model.load_options());
  if (!args.model.adapter.empty()) core::load_lora_adapter(*model, args.model.adapter);

  std::fwrite(args.prompt.data(), 1, args.prompt.size(), stdout);
  std::fflush(stdout);
  const core::GenerateResult r =
      core::generate(*model, args.prompt, options, [](std::string_view piece) {
        std::fwrite(piece.data(), 1, piece.size(), stdout);
        std::fflush(stdout);
      });
  std::fputc('\n', stdout);
  std::fflush(stdout);
  const auto n_prompt = static_cast<int64_t>(r.prompt_ids.size());
  log::info(
      "generate: prefill {} tokens in {:.3f} s ({:.1f} tokens/s), decode {} tokens in {:.3f} s "
      "({:.1f} tokens/s), {} new tokens, stop: {}; layers loaded in {:.2f} s; peak RSS {:.0f} MiB",
      n_prompt, r.prefill_seconds, per_second(n_prompt, r.prefill_seconds), r.decode_steps,
      r.decode_seconds, per_second(r.decode_steps, r.decode_seconds), r.new_ids.size(),
      core::stop_reason_name(r.stop), r.load_seconds, core::peak_resident_mb());
  return 0;
}

}  // namespace

CommandRunner add_generate_command(CLI::App& app) {
  auto args = std::make_shared<GenerateArgs>();
  CLI::App* cmd = app.add_subcommand(
      "generate", "Generate text from a prompt with a KV cache (greedy unless sampling is asked)");
  args->model.add_to(*cmd, "HF model directory (float or calq/packed checkpoint) or llama2.c .bin");
  cmd->add_option("--prompt", args->prompt,
                  "Text to continue; the tokenizer's BOS comes first (\"\" = BOS only)")
      ->required();
  cmd->add_option("--max-new-tokens", args->max_new_tokens,
                  "Most tokens to generate (fewer at EOS or the model's context)")
      ->capture_default_str()->check(in_range(0, int64_t{1} << 24));
  CLI::Option* greedy = cmd->add_flag("--greedy", args->greedy,
                                      "Pick the most likely token each step (the default)");
  CLI::Option* temperature = cmd->add_option("--temperature", args->temperature,
                                             "Sample: divide the logits by T (> 0)")
                                 ->capture_default_str();
  CLI::Option* top_k = cmd->add_option("--top-k", args->top_k,
                                       "Sample among the K most likely tokens (0 = all)")
                           ->capture_default_str()->check(at_least(0));
  CLI::Option* top_p = cmd->add_option("--top-p", args->top_p,
                                       "Sample among the most likely tokens of total probability "
                                       "P (1 = all)")
                           ->capture_default_str();
  CLI::Option* seed = cmd->add_option("--seed", args->seed, "Seed of the sampling generator")
                          ->capture_default_str();
  for (CLI::Option* o : {temperature, top_k, top_p, seed}) greedy->excludes(o);
  return [args, temperature, top_k, top_p, seed] {
    args->sampling = temperature->count() + top_k->count() + top_p->count() + seed->count() > 0;
    return run_generate(*args);
  };
}

}  // namespace calq::cli
