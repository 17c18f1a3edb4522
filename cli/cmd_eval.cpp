// `calq eval`: perplexity of a model on a text under the GPTQ protocol (docs/algorithms.md §10.1)
// and zero-shot tasks with lm-eval-harness's semantics (docs/tasks.md).
// stdout gets one result line per text; --json writes the figures with their protocol.
#include <ATen/ATen.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/bounds.h"
#include "cli/commands.h"
#include "cli/model_flags.h"
#include "run/window_logits.h"
#include "core/checkpoint/lora_adapter.h"
#include "core/error.h"
#include "core/eval/eval_budget.h"
#include "core/eval/eval_text.h"
#include "core/eval/kl_divergence.h"
#include "core/eval/loglikelihood.h"
#include "core/eval/perplexity.h"
#include "core/eval/task.h"
#include "core/io/atomic_file.h"
#include "core/io/output_dir.h"
#include "core/log.h"
#include "core/model/model.h"
#include "core/tokenizer/tokenizer.h"

namespace calq::cli {
namespace {

struct EvalArgs {
  ModelFlags model;
  std::vector<std::string> data;
  std::string join = "as-is";
  int64_t seqlen = 2048;
  int64_t batch_size = 8;
  int64_t max_windows = 0;
  std::string json;
  std::string logits;  ///< safetensors file: input_ids and float32 logits of the first text's windows
  std::string kl_base;       ///< a model directory or a --save-logits file
  std::string save_logits;   ///< the first text's top-k distribution, for later --kl-base
  int64_t kl_top_k = core::kDefaultKlTopK;
  bool rolling = false;  ///< lm-eval's rolling word/byte perplexity of each --data text too
  std::vector<std::string> tasks;  ///< task definitions (docs/tasks.md)
  int64_t task_limit = 0;
  int64_t max_length = 0;  ///< lm-eval's max_length; 0: the model's
};

/// One task's line on stdout and its JSON (metrics, and per document each request's Σ log p
/// and greediness, as lm-eval's samples hold them).
/// The KL base for --kl-base: a file `--save-logits` wrote, or a model directory whose top-k
/// distribution is computed here on the evaluated windows.
core::TopKDistribution kl_base(const EvalArgs& args, const std::vector<int32_t>& tokens,
                               const core::PerplexityResult& r) {
  if (!std::filesystem::is_directory(args.kl_base)) return core::load_topk_distribution(args.kl_base);
  ModelFlags flags = args.model;
  flags.model = args.kl_base;
  core::LoadOptions load = flags.load_options();
  load.tokenizer_path.clear();
  load.load_tokenizer = false;
  auto base = core::load_model(load);
  log::info("kl base: {} on {} windows of {}", args.kl_base, r.windows, r.seqlen);
  return core::topk_distribution(*base, tokens, r.seqlen, r.windows, args.kl_top_k, args.batch_size);
}

/// The model's weight files on disk (model*.safetensors, or the one file given) and bits per
/// parameter over the whole checkpoint (embeddings and norms included); null without files.
nlohmann::json checkpoint_size(const std::string& path, const core::Model& model) {
  namespace fs = std::filesystem;
  uint64_t bytes = 0;
  std::error_code ec;
  if (fs::is_regular_file(path, ec)) {
    bytes = fs::file_size(path, ec);
  } else if (fs::is_directory(path, ec)) {
    for (const auto& entry : fs::directory_iterator(path, ec)) {
      // The weight files transformers reads (model.safetensors or its shards), not other files
      // kept beside them (test logits, adapters' own folders).
      const std::string name = entry.path().filename().string();
      const bool weights = name.rfind("model", 0) == 0 && entry.path().extension() == ".safetensors";
      if (entry.is_regular_file(ec) && weights) bytes += entry.file_size(ec);
    }
  }
  if (bytes == 0 || model.n_parameters() <= 0) return nullptr;
  return {{"bytes", bytes}, {"parameters", model.n_parameters()},
          {"bits_per_parameter", 8.0 * static_cast<double>(bytes) / static_cast<double>(model.n_parameters())}};
}

/// --task FILE or FILE=DATA: the definition, and the documents to read instead of its own.
nlohmann::json run_task(core::Model& model, const std::string& arg, const EvalArgs& args) {
  std::string path = arg, data;
  const size_t eq = arg.rfind('=');
  if (!std::filesystem::exists(arg) && eq != std::string::npos) {
    path = arg.substr(0, eq);
    data = arg.substr(eq + 1);
  }
  const core::Task task = core::load_task(path, args.task_limit, data);
  log::info("task {}: {} documents ({}, form {})", task.name, task.docs.size(),
            core::task_type_name(task.type), task.form);
  const core::TaskResult r = core::evaluate_task(model, task, args.max_length);
  std::string line;
  for (const auto& [metric, value] : r.metrics) line += fmt::format(" {} {:.6f}", metric, value);
  std::printf("%s:%s (%lld documents, %s)\n", r.name.c_str(), line.c_str(),
              static_cast<long long>(r.docs), core::task_type_name(r.type));
  std::fflush(stdout);
  nlohmann::json out = nlohmann::json::parse(r.json(/*per_document=*/true));
  out["file"] = task.file;
  out["data"] = task.data;
  out["form"] = task.form;
  return out;
}

int run_eval(const EvalArgs& args) {
  if (!args.json.empty()) core::check_output_file(args.json, "--json");  // before any work
  if (!args.logits.empty()) core::check_output_file(args.logits, "--logits");
  if (!args.save_logits.empty()) core::check_output_file(args.save_logits, "--save-logits");
  CALQ_CHECK((args.kl_base.empty() && args.save_logits.empty()) || !args.data.empty(),
             "calq eval: --kl-base and --save-logits need --data TEXT (the windows they score)");
  auto model = core::load_model(args.model.load_options());
  std::optional<core::AdapterResult> adapter;
  if (!args.model.adapter.empty()) adapter = core::load_lora_adapter(*model, args.model.adapter);
  CALQ_CHECK(model->tokenizer() != nullptr,
             "{}: no tokenizer found beside the model; expected --tokenizer PATH", args.model.model);
  const core::TextJoin join = core::parse_text_join(args.join);
  // Before any text is read: a window the model cannot hold, or one that cannot fit. The
  // batch is checked once the text says how many windows it has (evaluate_perplexity).
  if (!args.data.empty()) core::check_perplexity_fits(*model, args.seqlen, /*batch_size=*/1, "--seqlen");

  CALQ_CHECK(!args.data.empty() || !args.tasks.empty(),
             "calq eval: nothing to evaluate; expected --data TEXT or --task FILE");
  nlohmann::json results = nlohmann::json::array();
  for (const std::string& path : args.data) {
    const core::EvalText text = core::read_eval_text(path, join);
    core::PerplexityOptions options;
    options.seqlen = args.seqlen;
    options.batch_size = args.batch_size;
    options.max_windows = args.max_windows;
    options.label = "ppl " + text.dataset;
    log::info("tokenizing {} ({} bytes{})", path, text.text.size(),
              args.max_windows > 0 ? ", as far as the windows need" : "");
    const std::vector<int32_t> tokens =
        core::perplexity_tokens(*model->tokenizer(), text.text, options);
    core::PerplexityResult r = core::evaluate_perplexity(*model, tokens, options, path);
    r.dataset = text.dataset;
    if (!args.logits.empty() && results.empty())
      run::write_window_logits(*model, tokens, r, args.logits);
    r.join = core::text_join_name(text.join);
    std::printf("%s: ppl %.4f (GPTQ-protocol token perplexity: seqlen %lld, %lld tokens, %lld windows, join %s)\n",
                r.dataset.c_str(), r.ppl, static_cast<long long>(r.seqlen),
                static_cast<long long>(r.tokens), static_cast<long long>(r.windows),
                r.join.c_str());
    std::fflush(stdout);
    nlohmann::json rolling = nullptr;
    if (args.rolling) {
      const core::RollingMetrics m =
          core::rolling_metrics(*model, *model->tokenizer(), text.text,
                                args.max_length > 0 ? args.max_length : core::lm_eval_max_length(*model));
      std::printf("%s: lm-eval rolling (whole text as one document, %lld tokens): word_perplexity "
                  "%.4f byte_perplexity %.6f bits_per_byte %.6f\n",
                  text.dataset.c_str(), static_cast<long long>(m.tokens), m.word_perplexity(),
                  m.byte_perplexity(), m.bits_per_byte());
      std::fflush(stdout);
      rolling = {{"protocol", "lm-eval loglikelihood_rolling, the whole text as one document"},
                 {"tokens", m.tokens}, {"words", m.words}, {"bytes", m.bytes},
                 {"loglikelihood", m.loglikelihood}, {"word_perplexity", m.word_perplexity()},
                 {"byte_perplexity", m.byte_perplexity()}, {"bits_per_byte", m.bits_per_byte()}};
    }
    nlohmann::json kl = nullptr;
    if (results.empty() && !args.save_logits.empty()) {
      core::save_topk_distribution(core::topk_distribution(*model, tokens, r.seqlen, r.windows,
                                                           args.kl_top_k, args.batch_size),
                                   args.save_logits);
      log::info("wrote the top-{} distribution of {} windows to {}", args.kl_top_k, r.windows,
                args.save_logits);
    }
    if (results.empty() && !args.kl_base.empty()) {
      const core::KlResult k = core::compare_to_base(*model, kl_base(args, tokens, r), args.batch_size);
      std::printf("%s: KL vs %s: mean %.6f median %.6f p99 %.6f, top-1 agreement %.2f %%, "
                  "ppl %.4f vs base %.4f (ratio %.4f), top-%lld + rest, %lld tokens\n",
                  text.dataset.c_str(), k.base.c_str(), k.kl_mean, k.kl_median, k.kl_p99,
                  100.0 * k.top1_agreement, k.ppl, k.ppl_base, k.ppl_ratio(),
                  static_cast<long long>(k.k), static_cast<long long>(k.tokens));
      std::fflush(stdout);
      kl = nlohmann::json::parse(k.json());
    }
    results.push_back({{"dataset", r.dataset},
                       {"path", path},
                       {"join", r.join},
                       {"seqlen", r.seqlen},
                       {"tokens", r.tokens},
                       {"windows", r.windows},
                       {"predicted_tokens", r.predicted},
                       {"nll", r.nll},
                       {"ppl", r.ppl},
                       {"seconds", r.seconds},
                       {"tokens_per_second", r.tokens_per_second()},
                       {"protocol", "GPTQ token perplexity, non-overlapping windows"},
                       {"lm_eval_rolling", rolling},
                       {"kl", kl}});
  }
  const nlohmann::json size = checkpoint_size(args.model.model, *model);
  if (!size.is_null()) {  // on stderr: stdout keeps one result line per text or task
    log::info("checkpoint: {:.2f} MiB on disk, {:.3f} bits per parameter ({} parameters)",
              size.at("bytes").get<double>() / (1 << 20), size.at("bits_per_parameter").get<double>(),
              model->n_parameters());
  }
  nlohmann::json tasks = nlohmann::json::array();
  for (const std::string& path : args.tasks) tasks.push_back(run_task(*model, path, args));
  if (!args.json.empty()) {
    nlohmann::json doc = {{core::kWrittenByKey, "calq eval"},
                          {"model", args.model.model},
                          {"tokenizer", model->tokenizer()->path()},
                          {"device", args.model.device},
                          {"dtype", args.model.dtype},
                          {"adapter", adapter ? nlohmann::json::parse(adapter->json()) : nlohmann::json(nullptr)},
                          {"checkpoint", size},
                          {"perplexity", results},
                          {"tasks", tasks}};
    core::write_string_atomically(args.json, doc.dump(2) + "\n");
  }
  return 0;
}

}  // namespace

CommandRunner add_eval_command(CLI::App& app) {
  auto args = std::make_shared<EvalArgs>();
  CLI::App* cmd = app.add_subcommand(
      "eval", "Perplexity of a model on text (GPTQ protocol) and zero-shot tasks (lm-eval's)");
  args->model.add_to(*cmd, "HF model directory or llama2.c .bin");
  cmd->add_option("--data", args->data, "Text file(s) whose perplexity to evaluate");
  cmd->add_option("--kl-base", args->kl_base,
                  "KL divergence to a base on the first --data text's windows: the float model's "
                  "directory, or a file --save-logits wrote");
  cmd->add_option("--save-logits", args->save_logits,
                  "Write this model's top-k next-token log-probabilities on the first --data text's "
                  "windows (a KL base for later runs)");
  cmd->add_option("--kl-top-k", args->kl_top_k, "Tokens kept per position in a KL base")
      ->capture_default_str()->check(in_range(int64_t{1}, int64_t{1} << 20));
  cmd->add_flag("--rolling", args->rolling,
               "Also lm-eval's rolling word perplexity, byte perplexity and bits per byte of each "
               "--data text (the whole text as one document)");
  cmd->add_option("--task", args->tasks,
                  "Task definition(s) (YAML, docs/tasks.md) to evaluate with lm-eval-harness's "
                  "semantics; FILE=DATA reads the documents from DATA (JSON lines)");
  cmd->add_option("--task-limit", args->task_limit, "Evaluate only each task's first N documents "
                  "(0 = all)")->capture_default_str()->check(at_least(0));
  cmd->add_option("--max-length", args->max_length, "Tasks' context length in tokens, lm-eval's "
                  "max_length (0 = the model's)")->capture_default_str()->check(at_least(0));
  cmd->add_option("--join", args->join,
                  "as-is (file unchanged) | wikitext-rows (raw WikiText: rows joined by \\n\\n)")
      ->capture_default_str();
  cmd->add_option("--seqlen", args->seqlen, "Window length in tokens")->capture_default_str()
      ->check(in_range(2, int64_t{1} << 20));
  cmd->add_option("--batch-size", args->batch_size, "Windows per forward")->capture_default_str()
      ->check(at_least(1));
  cmd->add_option("--max-windows", args->max_windows, "Evaluate only the first N windows (0 = all)")
      ->capture_default_str()->check(at_least(0));
  cmd->add_option("--json", args->json, "Write the figures to this JSON file");
  cmd->add_option("--logits", args->logits,
                  "Write the first text's evaluated windows (input_ids) and their float32 logits "
                  "to this safetensors file");
  return [args] { return run_eval(*args); };
}

}  // namespace calq::cli
