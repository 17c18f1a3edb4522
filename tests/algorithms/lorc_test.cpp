// LoRC (docs/algorithms.md §7.3): the truncated SVD removes exactly the kept singular values from
// the error, the factors are float16, the pass installs them on the linears it follows, and the
// PEFT adapter round trip (names, shapes, values) and its refusals of malformed adapters.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>

#include <ATen/ATen.h>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "algorithms/lorc.h"
#include "algorithms/pipeline.h"
#include "calib/calibration_set.h"
#include "core/checkpoint/lora_adapter.h"
#include "core/error.h"
#include "core/io/safetensors.h"
#include "core/model/model.h"
#include "core/recipe.h"
#include "tests/support/temp_dir.h"
#include "tests/support/tiny_model.h"

namespace {

using Catch::Matchers::Contains;
namespace fs = std::filesystem;

calq::core::Recipe recipe_with(const calq::test::TempDir& dir, const std::string& passes) {
  std::ofstream(dir / "r.yaml") << "model: {path: model}\n"
                                   "scheme:\n  weights: {bits: 3, group_size: 8, sym: false}\n"
                                   "passes:\n"
                                << passes;
  return calq::core::load_recipe((dir / "r.yaml").string());
}

/// A tiny model quantized to 3 bits by RTN with LoRC rank `rank` on top.
std::unique_ptr<calq::core::Model> lorc_model(const calq::test::TempDir& dir, int rank) {
  const auto recipe = recipe_with(dir, "  - rtn\n  - lorc: {rank: " + std::to_string(rank) + "}\n");
  auto model = calq::test::load_tiny_model(dir / "model");
  auto passes = calq::algorithms::build_passes(recipe);
  calq::algorithms::quantize_model(*model, recipe, passes, nullptr, 2);
  return model;
}

}  // namespace

TEST_CASE("lorc factors remove exactly the kept singular values", "[lorc][algorithms]") {
  at::manual_seed(5);
  const at::Tensor e = at::randn({12, 10}, at::kDouble);
  const at::Tensor s = at::linalg_svdvals(e);
  for (int64_t rank : {1, 3, 10, 20}) {
    INFO("rank " << rank);
    const calq::core::LowRank f = calq::algorithms::low_rank_factors(e, rank, at::kDouble);
    const int64_t m = std::min<int64_t>(rank, 10);
    CHECK(f.a.sizes() == at::IntArrayRef({m, 10}));
    CHECK(f.b.sizes() == at::IntArrayRef({12, m}));
    const double residual = (e - at::mm(f.b, f.a)).norm().item<double>();
    const double discarded = m < 10 ? s.narrow(0, m, 10 - m).pow(2).sum().sqrt().item<double>() : 0.0;
    CHECK(residual == Approx(discarded).margin(1e-10));
  }
  // float16 factors: the dtype PEFT adapters store; the residual moves only by their rounding.
  const calq::core::LowRank h = calq::algorithms::low_rank_factors(e, 3, at::kHalf);
  CHECK(h.a.scalar_type() == at::kHalf);
  CHECK(h.b.scalar_type() == at::kHalf);
  CHECK(h.stored_dtype == at::kHalf);
  const double exact = s.narrow(0, 3, 7).pow(2).sum().sqrt().item<double>();
  const double rounded = (e - at::mm(h.b.to(at::kDouble), h.a.to(at::kDouble))).norm().item<double>();
  CHECK(rounded == Approx(exact).epsilon(1e-2));
  // b = U Σ^{1/2}, a = Σ^{1/2} Vᵀ: the columns of b and rows of a have equal norms √σ.
  const calq::core::LowRank d = calq::algorithms::low_rank_factors(e, 3, at::kDouble);
  CHECK(at::allclose(d.b.norm(2, {0}), s.narrow(0, 0, 3).sqrt(), 1e-12, 1e-12));
  CHECK(at::allclose(d.a.norm(2, {1}), s.narrow(0, 0, 3).sqrt(), 1e-12, 1e-12));
}

TEST_CASE("the lorc pass adds float16 factors of each quantized linear's error",
          "[lorc][algorithms]") {
  calq::test::TempDir dir("calq_lorc");
  calq::test::write_tiny_model(dir / "model", {});
  auto float_model = calq::test::load_tiny_model(dir / "model");
  auto model = lorc_model(dir, 4);
  for (const std::string& name : model->layer(0).linear_names()) {
    INFO(name);
    const calq::core::Linear& l = model->layer(1).linear(name);
    const calq::core::LowRank* low_rank = l.find<calq::core::LowRank>();
    REQUIRE(low_rank);
    CHECK(low_rank->a.size(0) == 4);
    CHECK(low_rank->stored_dtype == at::kHalf);
    CHECK(at::equal(low_rank->a, low_rank->a.to(at::kHalf).to(at::kFloat)));
    CHECK(at::equal(low_rank->b, low_rank->b.to(at::kHalf).to(at::kFloat)));
    // The quantized weight itself is untouched: the factors lower the error beside it.
    const at::Tensor w = float_model->layer(1).linear(name).weight;
    const at::Tensor effective = l.weight + at::mm(low_rank->b, low_rank->a);
    CHECK((w - effective).norm().item<double>() < (w - l.weight).norm().item<double>());
    // forward() is x Ŵᵀ + (x aᵀ) bᵀ.
    const at::Tensor x = at::randn({3, l.weight.size(1)});
    CHECK(at::allclose(l.forward(x), at::mm(x, effective.t()), 1e-5, 1e-5));
  }
}

TEST_CASE("lorc runs only after rtn or gptq", "[lorc][algorithms]") {
  calq::test::TempDir dir("calq_lorc_order");
  const auto refuses = [&](const std::string& passes, const std::string& why) {
    INFO(passes);
    CHECK_THROWS_WITH(calq::algorithms::build_passes(recipe_with(dir, passes)),
                      Contains("lorc") && Contains(why));
  };
  refuses("  - lorc: {}\n", "no quantizing pass runs before it");
  refuses("  - lorc: {}\n  - rtn\n", "no quantizing pass runs before it");
  refuses("  - rtn\n  - lorc: {rank: 0}\n", "rank");
  refuses("  - rtn\n  - lorc: {rnak: 8}\n", "rnak");
  CHECK(calq::algorithms::build_passes(recipe_with(dir, "  - gptq: {}\n  - lorc: {}\n")).size() == 2);
}

TEST_CASE("lorc after gptq still sees the Hessians gptq quantized against", "[lorc][algorithms]") {
  // GPTQ may consume a Hessian in place only when no later pass reads it; lorc reports its proxy
  // losses from the same statistics without asking for them.
  calq::test::TempDir dir("calq_lorc_gptq");
  calq::test::TinyModelSpec spec;
  calq::test::write_tiny_model(dir / "model", spec);
  calq::calib::CalibrationSet calibration;
  at::manual_seed(4);
  calibration.windows = at::randint(0, spec.vocab, {4, 16}, at::kLong);
  const auto recipe = recipe_with(dir, "  - gptq: {}\n  - lorc: {rank: 2}\n");
  auto model = calq::test::load_tiny_model(dir / "model");
  auto passes = calq::algorithms::build_passes(recipe);
  const auto result = calq::algorithms::quantize_model(*model, recipe, passes, &calibration, 2);
  for (const auto& layer : result.layers) {
    for (const auto& [name, state] : layer) {
      INFO(name);
      const auto& figures = state.reports.at("lorc").figures;
      REQUIRE(figures.count("proxy_loss_before") == 1);
      CHECK(figures.at("proxy_loss_after") <= figures.at("proxy_loss_before"));
    }
  }
}

TEST_CASE("lorc factors round-trip through a PEFT LoRA adapter", "[lorc][algorithms]") {
  calq::test::TempDir dir("calq_lorc_adapter");
  calq::test::write_tiny_model(dir / "model", {});
  auto model = lorc_model(dir, 4);
  const calq::core::AdapterResult written =
      calq::core::write_lora_adapter(*model, (dir / "adapter").string(), "base/path");
  CHECK(written.rank == 4);
  CHECK(written.linears == 2 * 7);

  nlohmann::json config;
  std::ifstream(dir / "adapter" / "adapter_config.json") >> config;
  CHECK(config["peft_type"] == "LORA");
  CHECK(config["task_type"] == "CAUSAL_LM");
  CHECK(config["r"] == 4);
  CHECK(config["lora_alpha"] == 4);
  CHECK(config["bias"] == "none");
  CHECK(config["base_model_name_or_path"] == "base/path");
  CHECK(config["target_modules"].size() == 14);
  const calq::core::SafetensorsFile file((dir / "adapter" / "adapter_model.safetensors").string());
  CHECK(file.names().size() == 28);
  const std::string key = "base_model.model.model.layers.1.mlp.down_proj.lora_A.weight";
  REQUIRE(file.contains(key));
  CHECK(file.info(key).dtype == calq::core::DType::F16);
  CHECK(file.info(key).shape == std::vector<int64_t>{4, 24});
  CHECK(file.info("base_model.model.model.layers.1.mlp.down_proj.lora_B.weight").shape ==
        std::vector<int64_t>{16, 4});
  CHECK(!fs::exists(dir / (".adapter.calq-tmp-" + std::to_string(::getpid()))));

  auto reloaded = calq::test::load_tiny_model(dir / "model");
  const calq::core::AdapterResult read = calq::core::load_lora_adapter(*reloaded, (dir / "adapter").string());
  CHECK(read.rank == 4);
  CHECK(read.linears == 14);
  for (int64_t i = 0; i < 2; ++i) {
    for (const std::string& name : model->layer(i).linear_names()) {
      INFO(i << " " << name);
      const auto* want = model->layer(i).linear(name).find<calq::core::LowRank>();
      const auto* got = reloaded->layer(i).linear(name).find<calq::core::LowRank>();
      REQUIRE(want);
      REQUIRE(got);
      CHECK(at::equal(got->a, want->a));
      CHECK(at::equal(got->b, want->b));
    }
  }
}

TEST_CASE("malformed adapters are refused naming the file and what was expected",
          "[lorc][algorithms]") {
  calq::test::TempDir dir("calq_lorc_bad");
  calq::test::write_tiny_model(dir / "model", {});
  auto model = calq::test::load_tiny_model(dir / "model");
  const std::string q = "base_model.model.model.layers.0.self_attn.q_proj";
  const auto write = [&](const std::string& name, const nlohmann::json& config,
                         const calq::core::NamedTensors& tensors) {
    const fs::path d = dir / name;
    fs::create_directories(d);
    std::ofstream(d / "adapter_config.json") << config.dump();
    calq::core::write_safetensors((d / "adapter_model.safetensors").string(), tensors);
    return d.string();
  };
  const nlohmann::json good = {{"peft_type", "LORA"}, {"r", 2}, {"lora_alpha", 2}, {"bias", "none"}};
  const at::Tensor a = at::zeros({2, 16}, at::kHalf), b = at::zeros({16, 2}, at::kHalf);
  const auto refuses = [&](const std::string& path, const std::string& what) {
    INFO(path);
    CHECK_THROWS_WITH(calq::core::load_lora_adapter(*model, path), Contains(what));
  };
  refuses((dir / "nowhere").string(), "no such directory");
  const std::string ok = write("ok", good, {{q + ".lora_A.weight", a}, {q + ".lora_B.weight", b}});
  CHECK_NOTHROW(calq::core::load_lora_adapter(*model, ok));
  CHECK(model->layer(0).linear("attn.q").find<calq::core::LowRank>());
  nlohmann::json ia3 = good;
  ia3["peft_type"] = "IA3";
  refuses(write("ia3", ia3, {{q + ".lora_A.weight", a}}), "expected LORA");
  nlohmann::json conv = good;
  conv["fan_in_fan_out"] = true;
  refuses(write("conv", conv, {{q + ".lora_A.weight", a}}), "fan_in_fan_out");
  refuses(write("shape", good, {{q + ".lora_A.weight", at::zeros({2, 15}, at::kHalf)},
                                {q + ".lora_B.weight", b}}),
          "expected [2, 16] (r, in_features)");
  refuses(write("rank", good, {{q + ".lora_A.weight", a},
                               {q + ".lora_B.weight", at::zeros({16, 3}, at::kHalf)}}),
          "expected [16, 2] (out_features, r)");
  refuses(write("half", good, {{q + ".lora_A.weight", a}}), "has only lora_A");
  refuses(write("unknown", good, {{"base_model.model.model.layers.0.self_attn.qq_proj.lora_A.weight", a}}),
          "did you mean \"model.layers.0.self_attn.q_proj\"");
  refuses(write("key", good, {{"model.layers.0.self_attn.q_proj.weight", a}}),
          "expected base_model.model.<module>.lora_A.weight");
  fs::remove(dir / "ok" / "adapter_model.safetensors");
  refuses((dir / "ok").string(), "adapter_model.safetensors: missing");
}
