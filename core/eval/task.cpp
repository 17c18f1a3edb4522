#include "core/eval/task.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/eval/loglikelihood.h"
#include "core/eval/python_text.h"
#include "core/io/small_file.h"
#include "core/log.h"
#include "core/model/model.h"
#include "core/options.h"
#include "core/recipe.h"

namespace calq::core {
namespace {

using nlohmann::json;

/// Task documents are a few MB at most (HellaSwag's validation split: 10k documents, 9 MB).
constexpr std::uint64_t kMaxTaskDataBytes = std::uint64_t{1} << 30;

/// Where a document came from, for errors: "arc.jsonl: line 12".
struct DocPlace {
  std::string file;
  int64_t line = 0;
  std::string text() const { return fmt::format("{}: line {}", file, line); }
};

/// The value at a dotted path ("choices.text", "endings.0") of a document.
const json& field(const json& doc, const std::string& path, const DocPlace& at) {
  const json* node = &doc;
  size_t start = 0;
  while (true) {
    const size_t dot = path.find('.', start);
    const std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (node->is_object() && node->contains(part)) {
      node = &(*node)[part];
    } else if (node->is_array() && !part.empty() && part.size() < 10 &&
               part.find_first_not_of("0123456789") == std::string::npos &&
               std::stoull(part) < node->size()) {
      node = &(*node)[std::stoull(part)];
    } else {
      fail("{}: the document has no field \"{}\"; expected the fields the task definition names",
           at.text(), path);
    }
    if (dot == std::string::npos) return *node;
    start = dot + 1;
  }
}

std::string scalar_text(const json& value, const std::string& path, const DocPlace& at) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_number_integer() || value.is_boolean()) return value.dump();
  fail("{}: field \"{}\" is {}; expected a string or an integer", at.text(), path,
       value.is_array() ? "a list" : value.is_object() ? "a mapping" : value.dump());
}

/// "{path}" replaced by the field's text; "{{" and "}}" are literal braces.
std::string render(const std::string& tpl, const json& doc, const DocPlace& at,
                   const std::string& key) {
  std::string out;
  for (size_t i = 0; i < tpl.size(); ++i) {
    const char c = tpl[i];
    if ((c == '{' || c == '}') && i + 1 < tpl.size() && tpl[i + 1] == c) {
      out += c;
      ++i;
    } else if (c == '{') {
      const size_t end = tpl.find('}', i + 1);
      CALQ_CHECK(end != std::string::npos, "{}: template \"{}\" opens a {{ it never closes; "
                 "expected {{field}} or {{{{ for a literal brace", key, tpl);
      const std::string path = tpl.substr(i + 1, end - i - 1);
      out += scalar_text(field(doc, path, at), path, at);
      i = end;
    } else {
      CALQ_CHECK(c != '}', "{}: template \"{}\" closes a }} it never opened; expected }}}} for a "
                 "literal brace", key, tpl);
      out += c;
    }
  }
  return out;
}

std::vector<std::string> string_list(const json& value, const std::string& path, const DocPlace& at) {
  CALQ_CHECK(value.is_array() && !value.empty(), "{}: field \"{}\" is not a non-empty list; "
             "expected the choices", at.text(), path);
  std::vector<std::string> out;
  for (const json& v : value) out.push_back(scalar_text(v, path, at));
  return out;
}

/// lm-eval's gold: an integer index, a string of digits as one, or a choice's own text.
int64_t gold_index(const json& value, const std::vector<std::string>& choices, const DocPlace& at,
                   const std::string& path) {
  int64_t gold = -1;
  if (value.is_number_integer()) {
    gold = value.get<int64_t>();
  } else if (value.is_string()) {
    const std::string s = value.get<std::string>();
    if (!s.empty() && s.size() < 10 && s.find_first_not_of("0123456789") == std::string::npos) {
      gold = std::stoll(s);
    } else {
      for (size_t i = 0; i < choices.size(); ++i)
        if (choices[i] == s) gold = static_cast<int64_t>(i);
    }
  }
  CALQ_CHECK(gold >= 0 && gold < static_cast<int64_t>(choices.size()),
             "{}: gold \"{}\" = {} is not one of the {} choices; expected an index in [0, {}) or "
             "a choice's text", at.text(), path, value.dump(), choices.size(), choices.size());
  return gold;
}

/// The reading of one task definition: its keys, read once, and the document builder.
struct Definition {
  TaskType type = TaskType::MultipleChoice;
  std::string form = "template";
  std::string context, target, text, choices, gold, gold_in;
  std::vector<std::string> choice_templates;
  std::string delimiter = " ";

  TaskDoc build(const json& doc, const DocPlace& at) const {
    TaskDoc d;
    if (form == "hellaswag") {  // lm_eval/tasks/hellaswag/utils.py process_docs
      const std::string ctx = scalar_text(field(doc, "ctx_a", at), "ctx_a", at) + " " +
                              python_text::capitalize(scalar_text(field(doc, "ctx_b", at), "ctx_b", at));
      d.contexts = {python_text::hellaswag_preprocess(
          scalar_text(field(doc, "activity_label", at), "activity_label", at) + ": " + ctx)};
      for (const std::string& e : string_list(field(doc, "endings", at), "endings", at))
        d.choices.push_back(python_text::hellaswag_preprocess(e));
      d.gold = gold_index(field(doc, "label", at), d.choices, at, "label");
    } else if (form == "winogrande") {  // lm_eval/tasks/winogrande/preprocess_winogrande.py
      const std::string sentence = scalar_text(field(doc, "sentence", at), "sentence", at);
      const size_t blank = sentence.find('_');
      CALQ_CHECK(blank != std::string::npos, "{}: sentence has no \"_\"; expected the blank the "
                 "options fill", at.text());
      for (const char* option : {"option1", "option2"})
        d.contexts.push_back(sentence.substr(0, blank) + scalar_text(field(doc, option, at), option, at));
      d.choices = d.contexts;  // lm-eval's doc_to_choice: acc_norm divides by these lengths
      const std::string answer = scalar_text(field(doc, "answer", at), "answer", at);
      CALQ_CHECK(answer == "1" || answer == "2", "{}: answer \"{}\"; expected \"1\" or \"2\"",
                 at.text(), answer);
      d.gold = answer == "1" ? 0 : 1;
      d.continuations.assign(2, delimiter + python_text::strip(sentence.substr(blank + 1)));
      return d;
    } else if (form == "last_word") {  // lambada: text.split(' ')[:-1] joined, ' ' + last
      const std::string t = render(text, doc, at, "text");
      const size_t last = t.rfind(' ');
      d.contexts = {last == std::string::npos ? std::string() : t.substr(0, last)};
      d.continuations = {" " + (last == std::string::npos ? t : t.substr(last + 1))};
      return d;
    } else if (form == "wikitext") {  // wikitext_detokenizer; words and bytes of the page
      d.counted = render(text, doc, at, "text");
      d.text = python_text::wikitext_detokenize(d.counted);
      return d;
    } else if (type == TaskType::MultipleChoice) {
      d.contexts = {render(context, doc, at, "context")};
      if (!choice_templates.empty()) {
        for (const std::string& t : choice_templates) d.choices.push_back(render(t, doc, at, "choices"));
      } else {
        d.choices = string_list(field(doc, choices, at), choices, at);
      }
      const json& g = field(doc, gold, at);
      if (!gold_in.empty()) {
        const std::vector<std::string> labels = string_list(field(doc, gold_in, at), gold_in, at);
        const std::string want = scalar_text(g, gold, at);
        for (size_t i = 0; i < labels.size(); ++i)
          if (labels[i] == want) d.gold = static_cast<int64_t>(i);
        CALQ_CHECK(d.gold >= 0 && d.gold < static_cast<int64_t>(d.choices.size()),
                   "{}: gold \"{}\" = \"{}\" is not in \"{}\"; expected one of its labels",
                   at.text(), gold, want, gold_in);
      } else {
        d.gold = gold_index(g, d.choices, at, gold);
      }
    } else if (type == TaskType::GreedyMatch) {
      d.contexts = {render(context, doc, at, "context")};
      d.continuations = {render(target, doc, at, "target")};
      return d;
    } else {
      d.text = render(text, doc, at, "text");
      d.counted = d.text;
      return d;
    }
    for (const std::string& c : d.choices) d.continuations.push_back(delimiter + c);
    return d;
  }
};

Definition read_definition(const Options& o) {
  Definition d;
  const std::string type = o.get_string_in("type", "multiple_choice",
                                           {"multiple_choice", "greedy_match", "rolling"});
  d.type = type == "multiple_choice" ? TaskType::MultipleChoice
           : type == "greedy_match"  ? TaskType::GreedyMatch
                                     : TaskType::Rolling;
  const std::map<TaskType, std::vector<std::string>> forms = {
      {TaskType::MultipleChoice, {"template", "hellaswag", "winogrande"}},
      {TaskType::GreedyMatch, {"template", "last_word"}},
      {TaskType::Rolling, {"template", "wikitext"}}};
  d.form = o.get_string_in("form", "template", forms.at(d.type));
  d.delimiter = o.get_string("target_delimiter", " ");
  if (d.form == "template" && d.type != TaskType::Rolling) d.context = o.require_string("context");
  if (d.form == "template" && d.type == TaskType::MultipleChoice) {
    d.gold = o.require_string("gold");
    d.gold_in = o.get_string("gold_in", "");
    d.choice_templates = o.get_strings("choice_templates", {});
    d.choices = o.get_string("choices", "");
    CALQ_CHECK(d.choice_templates.empty() != d.choices.empty(),
               "{}: expected exactly one of choices (a field holding the list) and "
               "choice_templates (a template per choice)", o.where("choices"));
  }
  if (d.form == "template" && d.type == TaskType::GreedyMatch) d.target = o.require_string("target");
  if (d.type == TaskType::Rolling || d.form == "last_word")
    d.text = o.get_string("text", d.form == "wikitext" ? "{page}" : "{text}");
  return d;
}

std::vector<json> read_documents(const std::string& path, int64_t limit) {
  const std::string bytes = read_small_file(path, "task documents (JSON lines)", kMaxTaskDataBytes);
  std::vector<json> docs;
  int64_t line_no = 0;
  for (size_t start = 0; start < bytes.size() && (limit <= 0 || static_cast<int64_t>(docs.size()) < limit);) {
    const size_t end = std::min(bytes.find('\n', start), bytes.size());
    const std::string line = bytes.substr(start, end - start);
    start = end + 1;
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    json doc = json::parse(line, nullptr, /*allow_exceptions=*/false);
    CALQ_CHECK(!doc.is_discarded() && doc.is_object(), "{}: line {}: not a JSON object; expected "
               "one document per line", path, line_no);
    doc["__line"] = line_no;
    docs.push_back(std::move(doc));
  }
  CALQ_CHECK(!docs.empty(), "{}: no documents; expected JSON lines, one document each", path);
  return docs;
}

double mean(const std::vector<double>& v) {
  double sum = 0.0;  // Python's sum(arr) / len(arr), left to right
  for (double x : v) sum += x;
  return sum / static_cast<double>(v.size());
}

/// np.argmax: the first index of the largest value.
size_t argmax(const std::vector<double>& v) {
  size_t best = 0;
  for (size_t i = 1; i < v.size(); ++i)
    if (v[i] > v[best]) best = i;
  return best;
}

}  // namespace

const char* task_type_name(TaskType type) {
  switch (type) {
    case TaskType::MultipleChoice: return "multiple_choice";
    case TaskType::GreedyMatch: return "greedy_match";
    case TaskType::Rolling: return "rolling";
  }
  return "?";
}

Task load_task(const std::string& path, int64_t limit, const std::string& data_override) {
  const Options o = load_yaml_options(path, "a task definition (YAML)");
  Task task;
  task.file = path;
  task.name = o.get_string("name", std::filesystem::path(path).stem().string());
  const Definition def = read_definition(o);
  const std::string data = o.require_string("data");
  o.finish();
  const std::filesystem::path p(data);
  task.data = !data_override.empty() ? data_override
              : p.is_absolute()      ? data
                                     : (std::filesystem::path(path).parent_path() / p).string();
  task.type = def.type;
  task.form = def.form;
  for (const json& doc : read_documents(task.data, limit)) {
    const DocPlace at{task.data, doc["__line"].get<int64_t>()};
    task.docs.push_back(def.build(doc, at));
  }
  return task;
}

std::string TaskResult::json(bool per_document) const {
  nlohmann::json out = {{"task", name}, {"type", task_type_name(type)}, {"documents", docs},
              {"metrics", metrics}, {"seconds", seconds}};
  if (per_document) {
    out["loglikelihoods"] = loglikelihoods;
    out["greedy"] = greedy;
  }
  return out.dump();
}

TaskResult evaluate_task(Model& model, const Task& task, int64_t max_length) {
  const Tokenizer* tokenizer = model.tokenizer();
  CALQ_CHECK(tokenizer != nullptr, "task {}: the model has no tokenizer; expected one beside it",
             task.name);
  if (max_length <= 0) max_length = lm_eval_max_length(model);
  const auto start = std::chrono::steady_clock::now();
  TaskResult r;
  r.name = task.name;
  r.type = task.type;
  r.docs = static_cast<int64_t>(task.docs.size());
  std::vector<double> acc, acc_norm, acc_bytes, lls;
  double ll_sum = 0.0, words = 0.0, bytes = 0.0;
  for (const TaskDoc& doc : task.docs) {
    std::vector<double> doc_lls;
    std::vector<bool> doc_greedy;
    if (task.type == TaskType::Rolling) {
      const LoglikelihoodResult ll = rolling_loglikelihood(model, *tokenizer, doc.text, max_length);
      doc_lls.push_back(ll.loglikelihood);
      doc_greedy.push_back(ll.is_greedy);
      ll_sum += ll.loglikelihood;
      words += static_cast<double>(python_text::split_whitespace_count(doc.counted));
      bytes += static_cast<double>(doc.counted.size());
    } else {
      for (size_t i = 0; i < doc.continuations.size(); ++i) {
        const std::string& context = doc.contexts.size() == 1 ? doc.contexts[0] : doc.contexts[i];
        const LoglikelihoodResult ll = loglikelihood(
            model, tokenize_request(*tokenizer, context, doc.continuations[i]), max_length);
        doc_lls.push_back(ll.loglikelihood);
        doc_greedy.push_back(ll.is_greedy);
      }
      if (task.type == TaskType::GreedyMatch) {
        acc.push_back(doc_greedy[0] ? 1.0 : 0.0);
        lls.push_back(doc_lls[0]);
      } else {
        std::vector<double> by_chars, by_bytes;
        for (size_t i = 0; i < doc.choices.size(); ++i) {
          by_chars.push_back(doc_lls[i] / static_cast<double>(python_text::code_points(doc.choices[i])));
          by_bytes.push_back(doc_lls[i] / static_cast<double>(doc.choices[i].size()));
        }
        const auto gold = static_cast<size_t>(doc.gold);
        acc.push_back(argmax(doc_lls) == gold ? 1.0 : 0.0);
        acc_norm.push_back(argmax(by_chars) == gold ? 1.0 : 0.0);
        acc_bytes.push_back(argmax(by_bytes) == gold ? 1.0 : 0.0);
      }
    }
    r.loglikelihoods.push_back(std::move(doc_lls));
    r.greedy.push_back(std::move(doc_greedy));
  }
  switch (task.type) {
    case TaskType::MultipleChoice:
      r.metrics = {{"acc", mean(acc)}, {"acc_norm", mean(acc_norm)}, {"acc_bytes", mean(acc_bytes)}};
      break;
    case TaskType::GreedyMatch:
      r.metrics = {{"acc", mean(acc)}, {"perplexity", std::exp(-mean(lls))}};
      break;
    case TaskType::Rolling:
      r.metrics = {{"word_perplexity", std::exp(-ll_sum / words)},
                   {"byte_perplexity", std::exp(-ll_sum / bytes)},
                   {"bits_per_byte", -ll_sum / bytes / std::log(2.0)}};
      break;
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

}  // namespace calq::core
