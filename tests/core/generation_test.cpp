// core/model/kv_cache + core/eval/generation + core/eval/sampler: incremental decoding equals the
// full forward in every family (tiny random models and data/hf-fixtures), with linear extensions
// installed; stories260K's greedy output equals llama2.c's test_all.py; the sampler's rules.
#include <cctype>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <catch2/catch.hpp>

#include "core/error.h"
#include "core/eval/generation.h"
#include "core/eval/sampler.h"
#include "core/io/safetensors.h"
#include "core/model/activation_quant_extensions.h"
#include "core/model/kv_cache.h"
#include "core/model/low_rank.h"
#include "core/model/model.h"
#include "core/tokenizer/tokenizer.h"
#include "tests/support/error_of.h"
#include "tests/support/kv_cache_check.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_data.h"
#include "tests/support/tiny_model.h"

namespace {

namespace fs = std::filesystem;
using calq::core::GenerateOptions;
using calq::core::Model;

constexpr uint64_t kSeed = 24;

std::unique_ptr<Model> load(const fs::path& path, const std::string& tokenizer = "") {
  calq::core::LoadOptions options;
  options.path = path.string();
  options.tokenizer_path = tokenizer;
  options.load_tokenizer = !tokenizer.empty();
  return calq::core::load_model(options);
}

at::Tensor random_ids(int64_t batch, int64_t seq, int64_t vocab) {
  at::manual_seed(kSeed);
  return at::randint(vocab, {batch, seq}, at::kLong);
}

/// The text of a data file after its "---" line (header comments before it).
std::string text_after_header(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  const std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t mark = all.find("\n---\n");
  REQUIRE(mark != std::string::npos);
  return all.substr(mark + 5);
}

}  // namespace

TEST_CASE("kv cache: decoding equals the full forward's logits in every tiny family",
          "[core][generate]") {
  const std::string type = GENERATE(as<std::string>{}, "llama", "mistral", "qwen2", "qwen3", "phi3",
                                    "opt", "gpt2", "mixtral", "qwen2_moe", "qwen3_moe");
  INFO(type);
  calq::test::TempDir dir("calq_kv");
  calq::test::TinyModelSpec spec;
  spec.model_type = type;
  spec.seed = kSeed;
  if (type == "mistral") spec.sliding_window = 4;  // the window cuts the cached keys too
  calq::test::write_tiny_model(dir.path(), spec);
  auto model = load(dir.path());
  const at::Tensor ids = random_ids(2, 12, spec.vocab);
  for (const int64_t prefill : {1, 5, 12}) {
    INFO("prefill " << prefill);
    CHECK(calq::test::kv_cache_relative_error(*model, ids, prefill) <=
          calq::test::kDecodeRelTolF32);
  }
}

TEST_CASE("kv cache: decoding equals the full forward on every data/hf-fixtures model",
          "[core][generate]") {
  CALQ_REQUIRE_DATA(root, "hf-fixtures");
  int n = 0;
  for (const auto& entry : fs::directory_iterator(root)) {
    if (!fs::exists(entry.path() / "expected.safetensors")) continue;
    INFO(entry.path().filename().string());
    auto model = load(entry.path());
    const at::Tensor ids =
        calq::core::SafetensorsFile((entry.path() / "expected.safetensors").string())
            .load("input_ids");
    CHECK(calq::test::kv_cache_relative_error(*model, ids, ids.size(1) / 2) <=
          calq::test::kDecodeRelTolF32);
    ++n;
  }
  CHECK(n >= 7);  // gpt2 llama llama_bf16 llama_tied mistral opt qwen2
}

TEST_CASE("kv cache: activation fake-quant and LoRA factors apply to decoding steps as in the "
          "full forward", "[core][generate]") {
  calq::test::TempDir dir("calq_kv_ext");
  calq::test::TinyModelSpec spec;
  spec.seed = kSeed;
  calq::test::write_tiny_model(dir.path(), spec);
  auto model = load(dir.path());
  at::manual_seed(kSeed);
  for (int64_t i = 0; i < model->n_layers(); ++i) {
    auto& layer = model->layer(i);
    for (const std::string& name : layer.linear_names()) {
      calq::core::Linear& linear = layer.linear(name);
      // Per-token dynamic W8A8-style inputs: a token's scale depends on that token only.
      linear.put(std::make_shared<calq::core::InputQuant>(calq::core::ActQuantSpec{8, true}));
      auto lora = std::make_shared<calq::core::LowRank>();
      lora->a = at::randn({2, linear.weight.size(1)}) * 0.1;
      lora->b = at::randn({linear.weight.size(0), 2}) * 0.1;
      linear.put(lora);
    }
  }
  const at::Tensor ids = random_ids(1, 10, spec.vocab);
  CHECK(calq::test::kv_cache_relative_error(*model, ids, 4) <= calq::test::kDecodeRelTolF32);
}

TEST_CASE("generate: stories260K greedy from BOS equals llama2.c test_all.py's expected output",
          "[core][generate][data]") {
  CALQ_REQUIRE_DATA(bin, "stories260K/stories260K.bin");
  CALQ_REQUIRE_DATA(tok, "stories260K/tok512.bin");
  CALQ_REQUIRE_DATA(reference, "stories260K/llama2c_greedy_200.txt");
  auto model = load(bin, tok.string());
  GenerateOptions options;
  options.max_new_tokens = 200;  // run.c -n 200: positions 0..199 forwarded, 200 tokens printed
  std::string streamed;
  const calq::core::GenerateResult r =
      calq::core::generate(*model, "", options, [&](std::string_view p) { streamed += p; });
  CHECK(r.prompt_ids == std::vector<int32_t>{1});  // BOS only, as run.c for an empty prompt
  CHECK(r.new_ids.size() == 200);
  CHECK(r.stop == calq::core::StopReason::MaxNewTokens);
  const std::string expected = text_after_header(reference);
  CHECK(r.text == expected);
  CHECK(streamed == r.text);
  CHECK(r.decode_steps == 199);  // the 200th token is printed, never forwarded (run.c too)
}

TEST_CASE("generate: sotu-llama-6L continues a prompt with readable text",
          "[core][generate][data]") {
  CALQ_REQUIRE_DATA(dir, "sotu-llama-6L");
  calq::core::LoadOptions options;
  options.path = dir.string();
  auto model = calq::core::load_model(options);
  GenerateOptions g;
  g.max_new_tokens = 40;
  std::string streamed;
  const auto r = calq::core::generate(*model, "The state of our union", g,
                                      [&](std::string_view p) { streamed += p; });
  INFO(r.text);
  CHECK(r.prompt_ids.front() == 1);  // SentencePiece BOS
  CHECK(!r.new_ids.empty());
  CHECK(streamed == r.text);
  int letters = 0;
  for (char c : r.text) letters += std::isalpha(static_cast<unsigned char>(c)) ? 1 : 0;
  CHECK(letters >= 20);
  // Sampling is seeded: the same seed gives the same text, greedy is not what it must give.
  g.sampling.greedy = false;
  g.sampling.temperature = 0.8;
  g.sampling.top_k = 40;
  g.sampling.top_p = 0.95;
  g.sampling.seed = 7;
  const auto s1 = calq::core::generate(*model, "The state of our union", g);
  const auto s2 = calq::core::generate(*model, "The state of our union", g);
  CHECK(s1.new_ids == s2.new_ids);
}

TEST_CASE("generate: stops at the model's context and refuses a prompt that fills it",
          "[core][generate]") {
  calq::test::TempDir dir("calq_gen_ctx");
  calq::test::TinyModelSpec spec;
  spec.positions = 16;
  spec.seed = kSeed;
  calq::test::write_tiny_model(dir.path(), spec);
  auto model = load(dir.path());
  GenerateOptions options;
  options.max_new_tokens = 100;
  options.stop_ids = {-1};  // none: random weights may pick any token
  const auto r = calq::core::generate_ids(*model, {3, 4, 5}, options);
  CHECK(r.stop == calq::core::StopReason::MaxContext);
  CHECK(r.new_ids.size() == 13);  // 3 + 13 = 16 positions
  const std::string message = calq::test::error_of(
      [&] { calq::core::generate_ids(*model, std::vector<int32_t>(16, 3), options); });
  CHECK(message.find("16 tokens leave no room in the model's context of 16") != std::string::npos);
  options.max_new_tokens = 0;
  CHECK(calq::core::generate_ids(*model, {3}, options).new_ids.empty());
}

TEST_CASE("sampler: greedy takes the lowest id among tied maxima, sampling follows its options",
          "[core][generate]") {
  using calq::core::Sampler;
  using calq::core::SamplingOptions;
  const at::Tensor tied = at::tensor({0.5f, 2.0f, -1.0f, 2.0f});
  CHECK(Sampler(SamplingOptions{}).next(tied) == 1);

  SamplingOptions s;
  s.greedy = false;
  s.seed = kSeed;
  s.top_k = 1;  // only the largest survives (ties at the k-th kept: ids 1 and 3)
  Sampler top1(s);
  for (int i = 0; i < 20; ++i) {
    const int64_t t = top1.next(tied);
    CHECK((t == 1 || t == 3));
  }
  s.top_k = 0;
  s.top_p = 0.01;  // the single most likely token
  const at::Tensor peaked = at::tensor({0.1f, 0.2f, 3.0f, 0.3f});
  Sampler nucleus(s);
  for (int i = 0; i < 20; ++i) CHECK(nucleus.next(peaked) == 2);
  s.top_p = 1.0;
  s.temperature = 1e3;  // nearly uniform: every id appears in 400 draws
  Sampler hot(s);
  std::vector<int> seen(4, 0);
  for (int i = 0; i < 400; ++i) ++seen[static_cast<size_t>(hot.next(peaked))];
  for (int c : seen) CHECK(c > 0);
  // Seeded: two samplers with one seed draw the same sequence.
  Sampler a(s), b(s);
  for (int i = 0; i < 20; ++i) CHECK(a.next(peaked) == b.next(peaked));

  s.temperature = 0;
  CHECK(calq::test::error_of([&] { Sampler bad(s); }).find("--temperature 0") != std::string::npos);
  s.temperature = 1;
  s.top_p = 1.5;
  CHECK(calq::test::error_of([&] { Sampler bad(s); }).find("--top-p 1.5") != std::string::npos);
}
