// Zero-shot tasks with lm-evaluation-harness's semantics (docs/tasks.md): a task is a small YAML
// definition plus local JSON-lines documents. Three kinds, as lm-eval's output types:
//   multiple_choice  acc (argmax of Σ log p(choice)), acc_norm (the sums divided by each
//                    choice's length in characters) and acc_bytes (by its UTF-8 bytes);
//   greedy_match     lm-eval's `loglikelihood` tasks (LAMBADA): acc = the target is the greedy
//                    continuation, perplexity = exp(−mean log p(target));
//   rolling          lm-eval's `loglikelihood_rolling` (wikitext): word_perplexity,
//                    byte_perplexity and bits_per_byte of whole documents.
// Documents become requests through a template ("Question: {question}\nAnswer:") or a named form
// that reproduces one of lm-eval's task files (hellaswag, winogrande, last_word, wikitext).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace calq::core {

class Model;

enum class TaskType { MultipleChoice, GreedyMatch, Rolling };
const char* task_type_name(TaskType type);

/// One document as requests: multiple choice scores (contexts[i] or contexts[0],
/// continuations[i]) for every choice i; greedy_match one (context, continuation); rolling the
/// text, its words and bytes counted on `counted` (WikiText counts the page before it is
/// detokenized).
struct TaskDoc {
  std::vector<std::string> contexts;
  std::vector<std::string> continuations;
  std::vector<std::string> choices;  ///< multiple choice: the strings acc_norm divides by
  int64_t gold = -1;
  std::string text;
  std::string counted;
};

struct Task {
  std::string name;
  std::string file;  ///< the definition
  std::string data;  ///< the documents, resolved against the definition's folder
  TaskType type = TaskType::MultipleChoice;
  std::string form;  ///< template | hellaswag | winogrande | last_word | wikitext
  std::vector<TaskDoc> docs;
};

/// Reads a task definition and its documents (at most `limit` when > 0, the first ones), from
/// `data` when given instead of the definition's `data`. Throws calq::Error naming the file, the
/// key or the document line and what was expected.
Task load_task(const std::string& path, int64_t limit = 0, const std::string& data = "");

struct TaskResult {
  std::string name;
  TaskType type = TaskType::MultipleChoice;
  int64_t docs = 0;
  std::map<std::string, double> metrics;
  /// Per document, each request's Σ log p and whether it was greedy (lm-eval's resps).
  std::vector<std::vector<double>> loglikelihoods;
  std::vector<std::vector<bool>> greedy;
  double seconds = 0.0;
  /// task, type, documents, metrics, seconds; with per_document each request's Σ log p and
  /// greediness too (lm-eval's samples).
  std::string json(bool per_document) const;
};

/// Runs every request of `task` on `model` (its tokenizer) and aggregates as lm-eval does.
/// max_length 0: the model's (lm_eval_max_length).
TaskResult evaluate_task(Model& model, const Task& task, int64_t max_length = 0);

}  // namespace calq::core
