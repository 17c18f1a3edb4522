// Tests for core/eval: the text joins of docs/algorithms.md §10.1 and the perplexity protocol, on
// hand-computed streams and on the real sotu-llama-6L model against transformers' figure.
#include <ATen/ATen.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <vector>

#include <catch2/catch.hpp>

#include "core/error.h"
#include "core/eval/eval_text.h"
#include "core/eval/perplexity.h"
#include "core/model/model.h"
#include "core/tokenizer/tokenizer.h"
#include "tests/support/test_data.h"

using namespace calq;

namespace {

// transformers' float32 reference figures for sotu-llama-6L (data/PROVENANCE.md).
constexpr double kSotuValidPpl512 = 34.1207;
constexpr int64_t kSotuValidTokens = 250960;
// The acceptance bound: 0.05 % relative.
constexpr double kPplRelTol = 5e-4;

std::vector<int32_t> random_tokens(int64_t n, int64_t vocab, uint64_t seed) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  const at::Tensor t = at::randint(vocab, {n}, gen, at::TensorOptions().dtype(at::kInt));
  return std::vector<int32_t>(t.data_ptr<int32_t>(), t.data_ptr<int32_t>() + n);
}

}  // namespace

TEST_CASE("wikitext rows are joined with blank lines and whitespace rows emptied",
          "[core][eval]") {
  // Rows: " \n", " = Title = \n", " \n", "text\n" -> "", " = Title = \n", "", "text\n".
  const std::string raw = " \n = Title = \n \ntext\n";
  CHECK(core::join_wikitext_rows(raw) == "\n\n = Title = \n\n\n\n\ntext\n");
  CHECK(core::join_wikitext_rows("a\nb") == "a\n\n\nb");
}

TEST_CASE("the shared wikitext raw file rebuilds exactly the joined test text",
          "[core][eval][data]") {
  CALQ_REQUIRE_DATA(raw, "wikitext-2/wiki.test.raw");
  CALQ_REQUIRE_DATA(joined, "wikitext-2/test.joined.txt");
  const core::EvalText from_raw = core::read_eval_text(raw.string(), core::TextJoin::WikitextRows);
  const core::EvalText as_is = core::read_eval_text(joined.string(), core::TextJoin::AsIs);
  CHECK(from_raw.text == as_is.text);
  CHECK(as_is.dataset == "test.joined");
}

TEST_CASE("an empty text file is refused with its name", "[core][eval]") {
  const auto path = std::filesystem::temp_directory_path() / "calq_empty_eval_text.txt";
  { std::ofstream(path.string()).flush(); }
  try {
    core::read_eval_text(path.string());
    FAIL("expected an error");
  } catch (const Error& e) {
    CHECK_THAT(e.what(), Catch::Contains("calq_empty_eval_text.txt") && Catch::Contains("empty"));
  }
  std::filesystem::remove(path);
}

TEST_CASE("perplexity equals exp of the mean NLL over whole windows, tail dropped",
          "[core][eval][data]") {
  CALQ_REQUIRE_DATA(dir, "hf-fixtures/llama");
  core::LoadOptions load;
  load.path = dir.string();
  auto model = core::load_model(load);
  const int64_t seqlen = 16;
  const std::vector<int32_t> tokens = random_tokens(3 * seqlen + 5, 512, 7);  // tail of 5

  core::PerplexityOptions options;
  options.seqlen = seqlen;
  options.batch_size = 2;
  options.show_progress = false;
  const core::PerplexityResult r = core::evaluate_perplexity(*model, tokens, options);
  CHECK(r.windows == 3);
  CHECK(r.tokens == 3 * seqlen + 5);
  CHECK(r.predicted == 3 * (seqlen - 1));

  // Oracle: each window on its own, CE by hand in double.
  double nll = 0.0;
  for (int64_t w = 0; w < 3; ++w) {
    std::vector<int64_t> ids(tokens.begin() + w * seqlen, tokens.begin() + (w + 1) * seqlen);
    const at::Tensor x = at::tensor(ids, at::kLong).view({1, seqlen});
    const at::Tensor logp = at::log_softmax(model->forward(x).to(at::kDouble), -1)[0];
    for (int64_t t = 0; t + 1 < seqlen; ++t) nll -= logp[t][ids[t + 1]].item<double>();
  }
  nll /= static_cast<double>(3 * (seqlen - 1));
  CHECK(r.nll == Approx(nll).epsilon(1e-6));
  CHECK(r.ppl == Approx(std::exp(nll)).epsilon(1e-6));

  options.batch_size = 1;  // batching must not change the figure beyond float noise
  CHECK(core::evaluate_perplexity(*model, tokens, options).ppl == Approx(r.ppl).epsilon(1e-6));
}

TEST_CASE("a text shorter than one window is refused with its name", "[core][eval][data]") {
  CALQ_REQUIRE_DATA(dir, "hf-fixtures/llama");
  core::LoadOptions load;
  load.path = dir.string();
  auto model = core::load_model(load);
  core::PerplexityOptions options;
  options.seqlen = 64;
  options.show_progress = false;
  try {
    core::evaluate_perplexity(*model, random_tokens(10, 512, 1), options, "short.txt");
    FAIL("expected an error");
  } catch (const Error& e) {
    CHECK_THAT(e.what(), Catch::Contains("short.txt") && Catch::Contains("shorter than one window"));
  }
}

TEST_CASE("sotu-llama-6L perplexity on its held-out text matches transformers",
          "[core][eval][data][slow]") {
  CALQ_REQUIRE_DATA(dir, "sotu-llama-6L");
  core::LoadOptions load;
  load.path = dir.string();
  auto model = core::load_model(load);
  REQUIRE(model->tokenizer() != nullptr);
  const core::EvalText text = core::read_eval_text((dir / "sotu_valid.txt").string());
  const std::vector<int32_t> tokens = model->tokenizer()->encode(text.text, true);
  CHECK(static_cast<int64_t>(tokens.size()) == kSotuValidTokens);

  core::PerplexityOptions options;
  options.seqlen = 512;
  options.show_progress = false;
  const core::PerplexityResult r = core::evaluate_perplexity(*model, tokens, options);
  CHECK(r.windows == 490);
  CHECK(std::abs(r.ppl / kSotuValidPpl512 - 1.0) < kPplRelTol);
}
