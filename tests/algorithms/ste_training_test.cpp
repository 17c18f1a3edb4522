// The straight-through fake quantizer (docs/algorithms.md §9) and the two passes that train through
// it: LKD (§7.2) and QAT. The STE's forward must be RTN's weight bit for bit (so rtn after training
// installs exactly the trained student) and its gradient the clipped-STE mask; LKD must beat plain
// RTN on the layer's own MSE, QAT must lower the held-out LM loss (or keep RTN's model), both repeat exactly, and bad options
// fail naming their key.
#include <fstream>
#include <string>

#include <ATen/ATen.h>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "algorithms/pipeline.h"
#include "algorithms/ste_fake_quant.h"
#include "calib/calibration_set.h"
#include "core/error.h"
#include "core/model/model.h"
#include "core/quant/quantized_tensor.h"
#include "core/recipe.h"
#include "tests/support/temp_dir.h"
#include "tests/support/tiny_model.h"

namespace {

using calq::core::Grid;
using calq::core::QuantSpec;

QuantSpec spec_of(int bits, Grid grid, int64_t group) {
  QuantSpec spec = calq::core::weight_spec(bits, grid, group);
  spec.scale_dtype = at::kHalf;
  return spec;
}

calq::core::Recipe recipe_with(const calq::test::TempDir& dir, const std::string& scheme,
                               const std::string& passes) {
  std::ofstream(dir / "r.yaml") << "model: {path: model}\nscheme:\n" << scheme << "passes:\n" << passes;
  return calq::core::load_recipe((dir / "r.yaml").string());
}

struct Run {
  calq::algorithms::QuantizationResult result;
  nlohmann::json summary(const std::string& pass) const {
    return nlohmann::json::parse(result.pass_summaries.at(pass));
  }
};

Run run_recipe(const calq::test::TempDir& dir, const calq::core::Recipe& recipe,
               const calq::calib::CalibrationSet* calibration) {
  auto model = calq::test::load_tiny_model(dir / "model");
  auto passes = calq::algorithms::build_passes(recipe);
  return {calq::algorithms::quantize_model(*model, recipe, passes, calibration, 4)};
}

const char* kW4A8 =
    "  weights: {bits: 4, group_size: 8, sym: true, grid: gptq}\n"
    "  activations: {bits: 8, granularity: token, dynamic: true, sym: true}\n";

}  // namespace

TEST_CASE("ste_fake_quant's forward is quantize_weight's dequantized weight, bit for bit",
          "[ste][algorithms]") {
  at::manual_seed(7);
  const at::Tensor w = at::randn({12, 40}) * 0.05;
  for (const QuantSpec& spec :
       {spec_of(4, Grid::GptqAsym, 16), spec_of(3, Grid::GptqSym, 32), spec_of(4, Grid::CtSym, 8),
        spec_of(8, Grid::Absmax, -1), spec_of(4, Grid::AwqAsym, 16), spec_of(4, Grid::CtAsym, 16)}) {
    INFO(calq::core::describe(spec));
    const at::Tensor latent = w.clone().set_requires_grad(true);
    const at::Tensor got = calq::algorithms::ste_fake_quant(latent, spec);
    const at::Tensor want = calq::core::quantize_weight(w, spec).dequantize();
    CHECK(got.requires_grad());
    CHECK(at::equal(got.detach(), want));
    CHECK(at::equal(calq::algorithms::ste_fake_quant(w, spec), want));
  }
}

TEST_CASE("ste_fake_quant's gradient is the clipped straight-through mask", "[ste][algorithms]") {
  // gptq_sym on an all-positive row keeps lo = 0: s = 1/15, z = 8, so codes round(15x) + 8 clip
  // at 15 for x > 0.5 (docs/algorithms.md §1.1). Row 1 mixes signs: nothing clips.
  const at::Tensor w = at::tensor({0.1f, 0.2f, 0.3f, 0.4f, 0.6f, 0.8f, 1.0f,  //
                                   -0.7f, 0.3f, -0.1f, 0.5f, 0.2f, -0.4f, 0.6f})
                           .reshape({2, 7});
  const QuantSpec spec = spec_of(4, Grid::GptqSym, -1);
  const at::Tensor latent = w.clone().set_requires_grad(true);
  const at::Tensor upstream = at::arange(1, 15, at::kFloat).reshape({2, 7});
  (calq::algorithms::ste_fake_quant(latent, spec) * upstream).sum().backward();
  const at::Tensor mask = at::tensor({1.f, 1.f, 1.f, 1.f, 0.f, 0.f, 0.f,  //
                                      1.f, 1.f, 1.f, 1.f, 1.f, 1.f, 1.f})
                              .reshape({2, 7});
  CHECK(at::equal(calq::algorithms::ste_mask(w, spec), mask));
  CHECK(at::equal(latent.grad(), upstream * mask));

  // Asymmetric min/max grids never clip their own range: the gradient passes everywhere.
  at::manual_seed(3);
  const at::Tensor r = at::randn({6, 24});
  CHECK(calq::algorithms::ste_mask(r, spec_of(3, Grid::GptqAsym, 8)).min().item<float>() == 1.0f);
}

TEST_CASE("lkd lowers each layer's output MSE below plain RTN and repeats exactly",
          "[lkd][algorithms]") {
  calq::test::TempDir dir("calq_lkd");
  calq::test::TinyModelSpec spec;
  spec.seed = 3;
  calq::test::write_tiny_model(dir / "model", spec);
  calq::calib::CalibrationSet calibration;
  at::manual_seed(5);
  calibration.windows = at::randint(0, spec.vocab, {8, 16}, at::kLong);
  const auto recipe = recipe_with(
      dir, kW4A8, "  - lkd: {steps: 60, lr: 0.0005, batch_windows: 2, eval_windows: 0}\n  - rtn\n");
  const Run a = run_recipe(dir, recipe, &calibration);
  const nlohmann::json s = a.summary("lkd");
  REQUIRE(s["layers"].size() == 2);
  CHECK(s["activations"] == "fake-quantized (STE) during training");
  for (const auto& layer : s["layers"]) {
    INFO(layer.dump());
    // mse_before is the layer with every linear RTN'd (the student before any step).
    CHECK(layer["mse_after"].get<double>() < 0.9 * layer["mse_before"].get<double>());
  }
  CHECK(a.result.layers.at(0).at("attn.q").reports.at("lkd").figures.at("weight_change") > 0);
  CHECK(a.result.layers.at(0).at("attn.q").quantized.has_value());

  const Run b = run_recipe(dir, recipe, &calibration);
  for (size_t i = 0; i < 2; ++i) {
    for (const char* key : {"mse_before", "mse_after", "train_loss_first", "train_loss_last"})
      CHECK(b.summary("lkd")["layers"][i][key] == s["layers"][i][key]);
  }
  const auto codes = [](const Run& r) { return r.result.layers.at(1).at("mlp.down").quantized->codes; };
  CHECK(at::equal(codes(a), codes(b)));

  SECTION("random-token inputs need no calibration data") {
    const auto data_free = recipe_with(
        dir, kW4A8,
        "  - lkd: {steps: 60, lr: 0.0005, batch_windows: 2, inputs: random_tokens, "
        "random_windows: 8, random_seqlen: 16}\n");
    const Run r = run_recipe(dir, data_free, nullptr);
    for (const auto& layer : r.summary("lkd")["layers"]) {
      INFO(layer.dump());
      CHECK(layer["mse_after"].get<double>() < layer["mse_before"].get<double>());
    }
    CHECK(r.summary("lkd")["inputs"] == "random_tokens");
  }
}

TEST_CASE("qat lowers the held-out LM loss and keeps its best step", "[qat][algorithms]") {
  calq::test::TempDir dir("calq_qat");
  calq::test::TinyModelSpec spec;
  spec.seed = 4;
  calq::test::write_tiny_model(dir / "model", spec);
  // Text with a rule to learn (each token follows from the last), so windows the fine-tune never
  // saw get more predictable too: random tokens would give the held-out loss nothing to learn.
  calq::calib::CalibrationSet calibration;
  at::manual_seed(6);
  const at::Tensor starts = at::randint(0, spec.vocab, {12, 1}, at::kLong);
  calibration.windows = (starts + 5 * at::arange(16, at::kLong).unsqueeze(0)).remainder(spec.vocab);
  const auto recipe_at = [&](const std::string& qat) {
    return recipe_with(dir, "  weights: {bits: 3, group_size: 8, sym: false, grid: gptq}\n",
                       "  - qat: {" + qat + "}\n  - rtn\n");
  };
  const auto recipe = recipe_at("steps: 30, lr: 0.003, batch_windows: 4, holdout_windows: 4, eval_every: 5");
  const Run a = run_recipe(dir, recipe, &calibration);
  const nlohmann::json s = a.summary("qat");
  INFO(s.dump());
  CHECK(s["loss_after"].get<double>() < s["loss_before"].get<double>() - 0.01);
  CHECK(s["kept_step"].get<int64_t>() > 0);
  CHECK(s["train_windows"] == 8);
  CHECK(s["holdout_curve"].size() == 7);  // step 0, then every 5 steps
  CHECK(s["linears"] == 14);
  const Run b = run_recipe(dir, recipe, &calibration);
  CHECK(b.summary("qat") == s);

  SECTION("a fine-tune that only hurts the held-out windows keeps the RTN model") {
    // Held-out windows of uniform random tokens: the untrained model is already near their best
    // loss (ln vocab), and learning the training windows' rule only makes it confidently wrong.
    calq::calib::CalibrationSet mismatched = calibration;
    mismatched.windows.narrow(0, 8, 4).copy_(at::randint(0, spec.vocab, {4, 16}, at::kLong));
    const std::string hurtful = "steps: 10, lr: 0.01, batch_windows: 4, holdout_windows: 4, eval_every: 2";
    const auto codes = [&](const calq::core::Recipe& r, nlohmann::json* summary) {
      auto model = calq::test::load_tiny_model(dir / "model");
      auto passes = calq::algorithms::build_passes(r);
      auto result = calq::algorithms::quantize_model(*model, r, passes, &mismatched, 4);
      if (summary) *summary = nlohmann::json::parse(result.pass_summaries.at("qat"));
      return result.layers.at(1).at("mlp.down").quantized->codes;
    };
    nlohmann::json hurt;
    const at::Tensor trained = codes(recipe_at(hurtful), &hurt);
    INFO(hurt.dump());
    CHECK(hurt["kept_step"] == 0);
    CHECK(hurt["holdout_curve"].back()[1].get<double>() > hurt["loss_before"].get<double>());
    const auto rtn_only = recipe_with(
        dir, "  weights: {bits: 3, group_size: 8, sym: false, grid: gptq}\n", "  - rtn\n");
    CHECK(at::equal(trained, codes(rtn_only, nullptr)));
  }

  CHECK_THROWS_WITH(run_recipe(dir, recipe_at("holdout_windows: 12"), &calibration),
                    Catch::Contains("calibration.nsamples: 12") &&
                        Catch::Contains("holdout_windows"));
  CHECK_THROWS_WITH(run_recipe(dir, recipe, nullptr),
                    Catch::Contains("qat needs calibration data"));
}

TEST_CASE("lkd and qat refuse bad options naming the key", "[lkd][qat][algorithms]") {
  calq::test::TempDir dir("calq_ste_opts");
  calq::test::write_tiny_model(dir / "model", {});
  const auto refuses = [&](const std::string& pass, const std::string& where,
                           const std::string& why) {
    INFO(pass);
    CHECK_THROWS_WITH(calq::algorithms::build_passes(recipe_with(dir, kW4A8, pass)),
                      Catch::Contains(where) && Catch::Contains(why));
  };
  refuses("  - lkd: {steps: -1}\n", "passes.0.lkd.steps", "out of range");
  refuses("  - lkd: {lr: 0}\n", "passes.0.lkd.lr", "expected a number > 0");
  refuses("  - lkd: {inputs: wikitext}\n", "passes.0.lkd.inputs", "random_tokens");
  refuses("  - lkd: {step: 3}\n", "passes.0.lkd.step", "did you mean");
  refuses("  - qat: {batch_windows: 0}\n", "passes.0.qat.batch_windows", "0");
  refuses("  - rtn\n  - qat: {}\n", "passes.1.qat", "after a quantizing pass");
}
