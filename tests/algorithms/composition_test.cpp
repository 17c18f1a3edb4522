// Pass composition: which recipe orders run and which are refused, and what a transform hands the
// pass after it. A transform that folds 1/s into the op feeding a linear (SmoothQuant, AWQ) must
// leave that pass exactly the statistics a fresh calibration of the transformed model would give:
// H/(s sᵀ), absmax/s, mean|x|/s and inputs/s.
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <catch2/catch.hpp>

#include "algorithms/pass.h"
#include "algorithms/pipeline.h"
#include "algorithms/registry.h"
#include "algorithms/smoothquant.h"
#include "algorithms/targets.h"
#include "calib/calibration_set.h"
#include "calib/layerwise_runner.h"
#include "core/error.h"
#include "core/model/activation_quant_extensions.h"
#include "core/model/model.h"
#include "core/options.h"
#include "core/quant/activation_quant.h"
#include "core/recipe.h"
#include "tests/support/temp_dir.h"
#include "tests/support/tiny_model.h"

namespace {

using Catch::Matchers::Contains;

/// A copy of `linear` (sharing its tensors) without its bmm-input quantizer.
calq::core::Linear without_output_quant(const calq::core::Linear& linear) {
  calq::core::Linear plain = linear;
  std::vector<std::shared_ptr<const calq::core::LinearExtension>> rest;
  for (const auto& e : linear.extensions())
    if (e->kind() != calq::core::OutputQuant::kKind) rest.push_back(e);
  plain.set_extensions(std::move(rest));
  return plain;
}

calq::core::Recipe recipe_with(const calq::test::TempDir& dir, const std::string& passes) {
  std::ofstream(dir / "recipe.yaml") << "model: {path: model}\n"
                                        "scheme:\n  weights: {bits: 8, group_size: -1}\n"
                                        "  activations: {bits: 8}\n"
                                        "passes:\n"
                                     << passes;
  return calq::core::load_recipe((dir / "recipe.yaml").string());
}

std::vector<std::string> pass_order(const calq::test::TempDir& dir, const std::string& passes) {
  std::vector<std::string> names;
  for (const auto& pass : calq::algorithms::build_passes(recipe_with(dir, passes)))
    names.push_back(pass->name());
  return names;
}

/// Copies the statistics every linear of layer 0 has when this pass's turn comes.
class StatsRecorder : public calq::algorithms::Pass {
 public:
  std::map<std::string, calq::calib::LinearStats> seen;

  const char* name() const override { return "recorder"; }
  const calq::algorithms::PassTraits& traits() const override {
    static const calq::algorithms::PassTraits traits = [] {
      calq::algorithms::PassTraits t;
      t.schedule = calq::algorithms::PassSchedule::WholeLayer;
      return t;
    }();
    return traits;
  }
  calq::calib::StatRequest needs(const calq::algorithms::LinearTarget&) const override {
    return {true, true, true, true};
  }
  void apply(calq::algorithms::PassStep& step) override {
    if (step.step.layer_index != 0)
      return;
    for (const auto& [name, stats] : step.step.stats) {
      calq::calib::LinearStats copy = stats;
      copy.hessian = stats.hessian.clone();
      copy.absmax = stats.absmax.clone();
      copy.mean_abs = stats.mean_abs.clone();
      copy.inputs = stats.inputs.clone();
      seen[name] = copy;
    }
  }
};

double rel_diff(const at::Tensor& got, const at::Tensor& want) {
  return ((got - want).abs().max() / want.abs().max()).item<double>();
}

}  // namespace

TEST_CASE("recipes compose transforms before one quantizing pass, in recipe order",
          "[composition][algorithms]") {
  calq::test::TempDir dir("calq_compose");
  using V = std::vector<std::string>;
  CHECK(pass_order(dir, "  - smoothquant: {}\n  - gptq: {}\n") == V{"smoothquant", "gptq"});
  CHECK(pass_order(dir, "  - smoothquant: {}\n  - rtn\n") == V{"smoothquant", "rtn"});
  CHECK(pass_order(dir, "  - smoothquant: {}\n  - awq: {}\n  - gptq: {}\n") ==
        V{"smoothquant", "awq", "gptq"});
  // A transform alone ends in the implicit RTN to the scheme.
  CHECK(pass_order(dir, "  - smoothquant: {}\n") == V{"smoothquant", "rtn"});
}

TEST_CASE("invalid pass orders are refused with the reason, before any work",
          "[composition][algorithms]") {
  calq::test::TempDir dir("calq_compose");
  const auto refuses = [&](const std::string& passes, const std::string& where,
                           const std::string& why) {
    INFO(passes);
    try {
      calq::algorithms::build_passes(recipe_with(dir, passes));
      FAIL("accepted");
    } catch (const calq::Error& e) {
      const std::string message = e.what();
      CHECK_THAT(message, Contains(where) && Contains(why));
      CHECK(message.find('\n') == std::string::npos);
    }
  };
  refuses("  - gptq: {}\n  - awq: {}\n", "passes.1.awq", "after a quantizing pass");
  refuses("  - rtn\n  - gptq: {}\n", "passes.1.gptq", "after a quantizing pass");
  refuses("  - awq: {}\n  - smoothquant: {}\n", "passes.1.smoothquant", "runs after awq");
  refuses("  - smoothquant: {}\n  - smoothquant: {alpha: 0.8}\n", "passes.1.smoothquant",
          "appears twice");
  refuses("  - awq: {}\n  - awq: {}\n  - gptq: {}\n", "passes.1.awq", "appears twice");
}

TEST_CASE("smoothquant hands the next pass the statistics of the smoothed model",
          "[composition][algorithms]") {
  calq::test::TempDir dir("calq_compose");
  const auto spec = calq::test::small_model(5);
  calq::test::write_tiny_model(dir / "model", spec);
  const auto recipe = recipe_with(dir, "  - smoothquant: {alpha: 0.7}\n");
  calq::calib::CalibrationSet calibration;
  calibration.windows = calq::test::seeded_windows(spec, 9);

  const auto run = [&](calq::core::Model& model, bool smooth) {
    std::vector<std::unique_ptr<calq::algorithms::Pass>> passes;
    if (smooth)
      passes.push_back(calq::algorithms::make_pass(
          "smoothquant", recipe.passes.at(0).options, recipe.scheme));
    auto recorder = std::make_unique<StatsRecorder>();
    StatsRecorder* seen = recorder.get();
    passes.push_back(std::move(recorder));
    passes.push_back(calq::algorithms::make_pass("rtn", calq::core::Options(), recipe.scheme));
    calq::algorithms::quantize_model(model, recipe, passes, &calibration, 2);
    return seen->seen;
  };

  // smoothquant → recorder on one copy of the model.
  auto composed_model = calq::test::load_tiny_model(dir / "model");
  const auto composed = run(*composed_model, true);

  // The same smoothing folded by hand from the float statistics, then a fresh calibration.
  auto float_model = calq::test::load_tiny_model(dir / "model");
  const auto float_stats = run(*float_model, false);
  auto smoothed = calq::test::load_tiny_model(dir / "model");
  calq::core::DecoderLayer& layer = smoothed->layer(0);
  for (const auto& group : calq::algorithms::norm_fed_groups(smoothed->layer_schema(0)))
    calq::algorithms::smooth_group(layer, group, float_stats.at(group.linears.front()).absmax, 0.7);
  const auto fresh = run(*smoothed, false);

  for (const std::string name : {"attn.q", "attn.v", "mlp.gate", "mlp.up", "attn.o"}) {
    INFO(name);
    const auto& got = composed.at(name);
    const auto& want = fresh.at(name);
    CHECK(rel_diff(got.hessian, want.hessian) < 1e-5);
    CHECK(rel_diff(got.absmax, want.absmax) < 1e-5);
    CHECK(rel_diff(got.mean_abs, want.mean_abs) < 1e-5);
    CHECK(rel_diff(got.inputs, want.inputs) < 1e-5);
  }
  // The smoothing really moved the statistics of the norm-fed linears.
  CHECK(rel_diff(composed.at("attn.q").absmax, float_stats.at("attn.q").absmax) > 0.05);
}

TEST_CASE("W8A8, W4A8 and W4A4 schemes install their activation quantizers on every linear",
          "[composition][algorithms]") {
  calq::test::TempDir dir("calq_compose");
  calq::test::write_tiny_model(dir / "model", {});
  for (const auto& [w_bits, a_bits] : {std::pair{8, 8}, std::pair{4, 8}, std::pair{4, 4}}) {
    INFO("W" << w_bits << "A" << a_bits);
    std::ofstream(dir / "recipe.yaml")
        << "model: {path: model}\nscheme:\n  weights: {bits: " << w_bits
        << ", group_size: -1}\n  activations: {bits: " << a_bits
        << ", granularity: token, dynamic: true}\npasses: [rtn]\n";
    const auto recipe = calq::core::load_recipe((dir / "recipe.yaml").string());
    auto model = calq::test::load_tiny_model(dir / "model");
    auto passes = calq::algorithms::build_passes(recipe);
    calq::algorithms::quantize_model(*model, recipe, passes, nullptr, 2);
    for (int64_t i = 0; i < model->n_layers(); ++i) {
      for (const auto& name : model->layer(i).linear_names()) {
        const auto* q = model->layer(i).linear(name).find<calq::core::InputQuant>();
        REQUIRE(q);
        CHECK(q->spec.bits == a_bits);
        CHECK(q->spec.granularity == calq::core::ActGranularity::PerToken);
      }
    }
  }
}

TEST_CASE("bmm_inputs quantizes the q/k/v outputs per token, as smoothquant's quantize_bmm_input",
          "[composition][algorithms]") {
  calq::test::TempDir dir("calq_compose");
  calq::test::write_tiny_model(dir / "model", {});
  std::ofstream(dir / "recipe.yaml")
      << "model: {path: model}\nscheme:\n  weights: {bits: 8, group_size: -1, grid: absmax, sym: true}\n"
         "  activations: {bits: 8, granularity: token, dynamic: true, bmm_inputs: true}\npasses: [rtn]\n";
  const auto recipe = calq::core::load_recipe((dir / "recipe.yaml").string());
  auto model = calq::test::load_tiny_model(dir / "model");
  auto passes = calq::algorithms::build_passes(recipe);
  calq::algorithms::quantize_model(*model, recipe, passes, nullptr, 2);
  calq::core::DecoderLayer& layer = model->layer(0);
  for (const std::string name : {"attn.q", "attn.k", "attn.v"})
    CHECK(layer.linear(name).find<calq::core::OutputQuant>());
  for (const std::string name : {"attn.o", "mlp.gate", "mlp.up", "mlp.down"})
    CHECK_FALSE(layer.linear(name).find<calq::core::OutputQuant>());
  // The output is the per-token fake quantization of the plain (input-quantized) GEMM.
  at::manual_seed(3);
  const at::Tensor x = at::randn({2, 5, 16});
  calq::core::Linear& q = layer.linear("attn.q");
  const at::Tensor got = q.forward(x);
  const calq::core::ActQuantSpec spec = q.find<calq::core::OutputQuant>()->spec;
  const at::Tensor plain = without_output_quant(q).forward(x);
  CHECK(at::equal(got, calq::core::fake_quantize_activations(plain, spec)));
  CHECK_FALSE(at::equal(got, plain));
}

TEST_CASE("bmm_inputs quantizes a fused qkv output per part: q, k and v each per token",
          "[composition][algorithms]") {
  calq::test::TempDir dir("calq_compose");
  calq::test::TinyModelSpec spec;
  spec.model_type = "phi3";  // hidden 16, 4 heads of 4, 2 kv heads: qkv rows 16 | 8 | 8
  calq::test::write_tiny_model(dir / "model", spec);
  std::ofstream(dir / "recipe.yaml")
      << "model: {path: model}\nscheme:\n  weights: {bits: 8, group_size: -1, grid: absmax, sym: true}\n"
         "  activations: {bits: 8, granularity: token, dynamic: true, bmm_inputs: true}\npasses: [rtn]\n";
  const auto recipe = calq::core::load_recipe((dir / "recipe.yaml").string());
  auto model = calq::test::load_tiny_model(dir / "model");
  auto passes = calq::algorithms::build_passes(recipe);
  calq::algorithms::quantize_model(*model, recipe, passes, nullptr, 2);
  calq::core::DecoderLayer& layer = model->layer(0);
  CHECK(layer.linear("attn.qkv").find<calq::core::OutputQuant>());
  for (const std::string name : {"attn.o", "mlp.gate_up", "mlp.down"})
    CHECK_FALSE(layer.linear(name).find<calq::core::OutputQuant>());
  at::manual_seed(3);
  const at::Tensor x = at::randn({2, 5, 16});
  calq::core::Linear& qkv = layer.linear("attn.qkv");
  const at::Tensor got = qkv.forward(x);
  const calq::core::ActQuantSpec out_spec = qkv.find<calq::core::OutputQuant>()->spec;
  const at::Tensor plain = without_output_quant(qkv).forward(x);
  std::vector<at::Tensor> parts;
  for (const auto& [begin, rows] : {std::pair{0, 16}, std::pair{16, 8}, std::pair{24, 8}})
    parts.push_back(calq::core::fake_quantize_activations(plain.narrow(-1, begin, rows), out_spec));
  CHECK(at::equal(got, at::cat(parts, -1)));
  // One scale per token across q|k|v would be another quantizer.
  CHECK_FALSE(at::equal(got, calq::core::fake_quantize_activations(plain, out_spec)));
}

TEST_CASE("every recipe in configs/ loads and builds its passes", "[composition][algorithms]") {
  int n = 0;
  for (const auto& entry : std::filesystem::directory_iterator(std::string(CALQ_SOURCE_DIR) + "/configs")) {
    if (entry.path().extension() != ".yaml") continue;
    INFO(entry.path().string());
    const auto recipe = calq::core::load_recipe(entry.path().string());
    CHECK_NOTHROW(calq::algorithms::build_passes(recipe));
    ++n;
  }
  CHECK(n > 30);
}
