// core/eval/task: the task file's forms turn documents into lm-eval's requests, and bad
// definitions or documents give one error naming the file, key or line. (The metrics against
// lm-eval itself: tests/interop/test_lm_eval_parity.py.)
#include <filesystem>
#include <fstream>
#include <string>

#include <catch2/catch.hpp>

#include "core/error.h"
#include "core/eval/task.h"

namespace fs = std::filesystem;
using namespace calq;

namespace {

struct TaskDir {
  fs::path dir = fs::temp_directory_path() / "calq_task_test";
  TaskDir() { fs::remove_all(dir); fs::create_directories(dir); }
  ~TaskDir() { fs::remove_all(dir); }
  std::string write(const std::string& name, const std::string& text) const {
    std::ofstream(dir / name) << text;
    return (dir / name).string();
  }
};

}  // namespace

TEST_CASE("task forms build lm-eval's requests", "[tasks]") {
  TaskDir t;
  t.write("arc.jsonl",
          R"({"question": "Q1", "choices": {"text": ["a", "b"], "label": ["A", "B"]}, "answerKey": "B"})"
          "\n\n");
  const core::Task arc = core::load_task(t.write("arc.yaml", "data: arc.jsonl\ncontext: \"Question: {question}\\nAnswer:\"\n"
                                                            "choices: choices.text\ngold: answerKey\ngold_in: choices.label\n"));
  REQUIRE(arc.docs.size() == 1);
  CHECK(arc.name == "arc");
  CHECK(arc.docs[0].contexts == std::vector<std::string>{"Question: Q1\nAnswer:"});
  CHECK(arc.docs[0].continuations == std::vector<std::string>{" a", " b"});
  CHECK(arc.docs[0].gold == 1);

  t.write("wino.jsonl", R"({"sentence": "The cup beat the _ because it is big.", "option1": "cup", "option2": "jar", "answer": "2"})" "\n");
  const core::Task wino = core::load_task(t.write("wino.yaml", "form: winogrande\ndata: wino.jsonl\n"));
  CHECK(wino.docs[0].contexts == std::vector<std::string>{"The cup beat the cup", "The cup beat the jar"});
  CHECK(wino.docs[0].continuations == std::vector<std::string>{" because it is big.", " because it is big."});
  CHECK(wino.docs[0].gold == 1);

  t.write("lambada.jsonl", R"({"text": "she opened the door"})" "\n");
  const core::Task lambada = core::load_task(
      t.write("lambada.yaml", "type: greedy_match\nform: last_word\ndata: lambada.jsonl\n"));
  CHECK(lambada.docs[0].contexts == std::vector<std::string>{"she opened the"});
  CHECK(lambada.docs[0].continuations == std::vector<std::string>{" door"});

  t.write("hs.jsonl", R"({"activity_label": "Tea", "ctx_a": "Boil water.", "ctx_b": "THEN pour", "endings": ["it [title] now", "x"], "label": "0"})" "\n");
  const core::Task hs = core::load_task(t.write("hs.yaml", "form: hellaswag\ndata: hs.jsonl\n"));
  CHECK(hs.docs[0].contexts == std::vector<std::string>{"Tea: Boil water. Then pour"});
  CHECK(hs.docs[0].continuations == std::vector<std::string>{" it. now", " x"});

  // FILE=DATA: another document file than the definition's.
  t.write("arc2.jsonl", R"({"question": "Q2", "choices": {"text": ["c"], "label": ["A"]}, "answerKey": "A"})" "\n");
  CHECK(core::load_task((t.dir / "arc.yaml").string(), 0, (t.dir / "arc2.jsonl").string())
            .docs[0].contexts[0] == "Question: Q2\nAnswer:");
}

TEST_CASE("bad task files name the file, key or line", "[tasks]") {
  TaskDir t;
  t.write("d.jsonl", "{\"q\": \"x\", \"c\": [\"a\"], \"g\": 0}\nnot json\n");
  CHECK_THROWS_WITH(core::load_task(t.write("a.yaml", "data: d.jsonl\ncontext: \"{q}\"\nchoices: c\ngold: g\n")),
                    Catch::Contains("d.jsonl: line 2: not a JSON object"));
  t.write("e.jsonl", "{\"q\": \"x\", \"c\": [\"a\"], \"g\": 3}\n");
  CHECK_THROWS_WITH(core::load_task(t.write("b.yaml", "data: e.jsonl\ncontext: \"{q}\"\nchoices: c\ngold: g\n")),
                    Catch::Contains("e.jsonl: line 1: gold \"g\" = 3 is not one of the 1 choices"));
  CHECK_THROWS_WITH(core::load_task(t.write("c.yaml", "data: e.jsonl\ncontext: \"{missing}\"\nchoices: c\ngold: g\n")),
                    Catch::Contains("e.jsonl: line 1: the document has no field \"missing\""));
  CHECK_THROWS_WITH(core::load_task(t.write("f.yaml", "data: e.jsonl\ncontext: x\nchoices: c\ngold: g\nchoise: 1\n")),
                    Catch::Contains("choise: unknown key"));
  CHECK_THROWS_WITH(core::load_task(t.write("g.yaml", "type: rolling\nform: hellaswag\ndata: e.jsonl\n")),
                    Catch::Contains("form"));
  CHECK_THROWS_WITH(core::load_task(t.write("h.yaml", "data: nowhere.jsonl\ncontext: x\nchoices: c\ngold: g\n")),
                    Catch::Contains("nowhere.jsonl"));
}
