// `calq synth` of every synth family against transformers (issue 19 part 6): the fixtures
// tests/families/make_synth_fixtures.py writes with `calq synth` and runs through transformers
// (ctest `families.synth_fixtures`, fixture `synth_families`) load in calq, and calq's float32
// forward gives transformers' logits. Figures go to <fixtures>/calq_match.json.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include <ATen/ATen.h>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "core/io/safetensors.h"
#include "core/model/model.h"
#include "tests/support/kv_cache_check.h"
#include "tests/support/test_data.h"

namespace {

namespace fs = std::filesystem;

// transformers' float32 eager forward vs calq's on weights of std 0.2 (|logit| up to ~9): the
// same ops in another order and GEMM blocking, as kLogitTolF32 in family_fixtures_test.cpp.
constexpr double kLogitTolF32 = 1e-4;

fs::path fixtures_root() {
  if (const char* env = std::getenv("CALQ_SYNTH_FIXTURES")) return env;
  return fs::path(CALQ_BINARY_DIR) / "synth-fixtures";
}

}  // namespace

TEST_CASE("synth: every family's synth model loads in calq with transformers' logits",
          "[families][synth]") {
  std::ifstream in(fixtures_root() / "manifest.json");
  if (!in) {
    if (calq::test::running_in_ci()) FAIL("synth fixtures missing under CI: " << fixtures_root());
    WARN("SKIPPED: synth fixtures missing: " << fixtures_root()
                                             << " (scripts/setup.sh makes the venv)");
    return;
  }
  const nlohmann::json manifest = nlohmann::json::parse(in);
  REQUIRE(manifest.at("fixtures").size() >= 4);  // llama, llama3, qwen3, gemma3 at least
  nlohmann::json figures = nlohmann::json::object();
  for (const auto& [name, entry] : manifest.at("fixtures").items()) {
    INFO(name);
    const fs::path dir = fixtures_root() / name;
    calq::core::LoadOptions options;
    options.path = dir.string();
    options.compute_dtype = at::kFloat;
    auto model = calq::core::load_model(options);  // the byte tokenizer too
    REQUIRE(model->tokenizer() != nullptr);
    const calq::core::SafetensorsFile expected((dir / "expected.safetensors").string());
    const at::Tensor ids = expected.load("input_ids");
    const at::Tensor want = expected.load("logits");
    const at::Tensor logits = model->forward(ids);
    REQUIRE(logits.sizes() == want.sizes());
    const double err = (logits.to(at::kDouble) - want.to(at::kDouble)).abs().max().item<double>();
    figures[name] = {{"max_abs_logit_error", err},
                     {"max_abs_logit", want.abs().max().item<double>()}};
    INFO("max abs logits error " << err);
    CHECK(err <= kLogitTolF32);
  }
  const fs::path path = fixtures_root() / "calq_match.json";
  const fs::path tmp = path.string() + ".tmp";
  std::ofstream(tmp) << figures.dump(1) << "\n";
  fs::rename(tmp, path);
}

TEST_CASE("synth: KV-cache decoding equals the full forward in every synth family (MoE included)",
          "[families][synth][generate]") {
  std::ifstream in(fixtures_root() / "manifest.json");
  if (!in) {
    if (calq::test::running_in_ci()) FAIL("synth fixtures missing under CI: " << fixtures_root());
    WARN("SKIPPED: synth fixtures missing: " << fixtures_root());
    return;
  }
  const nlohmann::json manifest = nlohmann::json::parse(in);
  for (const auto& [name, entry] : manifest.at("fixtures").items()) {
    INFO(name);
    const fs::path dir = fixtures_root() / name;
    calq::core::LoadOptions options;
    options.path = dir.string();
    options.load_tokenizer = false;
    auto model = calq::core::load_model(options);
    const at::Tensor ids =
        calq::core::SafetensorsFile((dir / "expected.safetensors").string()).load("input_ids");
    const double err = calq::test::kv_cache_relative_error(*model, ids, ids.size(1) / 2);
    INFO("max decode error relative to the largest logit: " << err);
    CHECK(err <= calq::test::kDecodeRelTolF32);
  }
}
