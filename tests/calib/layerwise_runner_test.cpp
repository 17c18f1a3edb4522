// LayerwiseRunner against the model's own forward: the statistics it hands over must be those of
// the inputs each linear really sees under the sequential protocol (layer i+1 fed by the
// processed layer i; o fed by the processed q,k,v), and a whole quantization run must be
// bitwise repeatable.
#include "calib/layerwise_runner.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <catch2/catch.hpp>

#include "algorithms/pipeline.h"
#include "calib/calibration_set.h"
#include "core/model/model.h"
#include "core/recipe.h"
#include "tests/support/temp_dir.h"
#include "tests/support/tiny_model.h"

namespace {

using calq::calib::LayerStep;
using calq::calib::LinearStats;
using calq::calib::Requirements;
using calq::core::DecoderLayer;
using calq::core::Model;

at::Tensor random_windows(int64_t n, int64_t seq, int64_t vocab, uint64_t seed) {
  at::manual_seed(seed);
  return at::randint(0, vocab, {n, seq}, at::kLong);
}

/// Collects every statistic for every linear, and lets a test mutate weights after each subset.
class RecordingHandler : public calq::calib::LayerHandler {
 public:
  std::function<void(DecoderLayer&, int64_t layer, const std::vector<std::string>&)> mutate;
  bool propagate = true;
  std::map<std::pair<int64_t, std::string>, LinearStats> seen;

  void begin_layer(DecoderLayer&, int64_t) override {}
  std::vector<std::vector<std::string>> schedule(DecoderLayer&) override {
    return {{"attn.q", "attn.k", "attn.v"}, {"attn.o"}, {"mlp.gate", "mlp.up"}, {"mlp.down"}};
  }
  Requirements needs(DecoderLayer&, const std::vector<std::string>& subset) override {
    Requirements r;
    for (const auto& name : subset) r[name] = {true, true, true, true};
    return r;
  }
  void process(LayerStep& step) override {
    for (const auto& name : step.linears) seen[{step.layer_index, name}] = step.stats.at(name);
    if (mutate) mutate(step.layer, step.layer_index, step.linears);
  }
  bool propagate_quantized() const override { return propagate; }
  void end_layer(DecoderLayer&, int64_t) override {}
};

/// Inputs of every linear in a plain forward of `model`, keyed by (layer, linear).
std::map<std::pair<int64_t, std::string>, at::Tensor> capture_inputs(Model& model,
                                                                     const at::Tensor& ids) {
  std::map<std::pair<int64_t, std::string>, at::Tensor> inputs;
  model.forward(ids, [&](int64_t layer, std::string_view name, const at::Tensor& x) {
    inputs[{layer, std::string(name)}] = x.reshape({-1, x.size(-1)}).clone();
  });
  return inputs;
}

void check_stats_match(const LinearStats& got, const at::Tensor& x, int64_t n_samples) {
  const at::Tensor xd = x.to(at::kDouble);
  const at::Tensor hessian = 2.0 * xd.t().matmul(xd) / static_cast<double>(n_samples);
  CHECK(got.n_samples == n_samples);
  CHECK(got.n_tokens == x.size(0));
  CHECK(at::allclose(got.hessian.to(at::kDouble), hessian, 1e-5, 1e-6));
  CHECK(at::allclose(got.absmax, x.abs().amax(0), 1e-6, 1e-7));
  CHECK(at::allclose(got.mean_abs.to(at::kDouble), xd.abs().mean(0), 1e-6, 1e-7));
  CHECK(at::equal(got.inputs.reshape({-1, x.size(-1)}), x));
}

}  // namespace

TEST_CASE("runner statistics equal those of the inputs the float model's linears see",
          "[calib][runner]") {
  calq::test::TempDir dir("calq_runner");
  calq::test::write_tiny_model(dir.path(), {});
  auto model = calq::test::load_tiny_model(dir.path());
  const at::Tensor windows = random_windows(5, 12, 32, 3);  // 5 windows, batch 2: a short batch
  RecordingHandler handler;
  calq::calib::RunnerOptions options;
  options.batch_size = 2;
  options.show_progress = false;
  calq::calib::LayerwiseRunner(*model, windows, options).run(handler);

  const auto expected = capture_inputs(*model, windows);
  REQUIRE(handler.seen.size() == expected.size());
  for (const auto& [key, x] : expected) {
    INFO("layer " << key.first << " " << key.second);
    check_stats_match(handler.seen.at(key), x, 5);
  }
}

TEST_CASE("runner: layer i+1 is fed by the processed layer i, o by the processed q,k,v",
          "[calib][runner]") {
  calq::test::TempDir dir("calq_runner");
  calq::test::write_tiny_model(dir.path(), {});
  const at::Tensor windows = random_windows(4, 10, 32, 5);
  calq::calib::RunnerOptions options;
  options.show_progress = false;

  // The "quantizer" halves every weight of a processed subset.
  const auto halve = [](DecoderLayer& layer, int64_t, const std::vector<std::string>& subset) {
    for (const auto& name : subset) layer.linear(name).weight.mul_(0.5);
  };

  SECTION("propagate quantized (GPTQ protocol)") {
    auto model = calq::test::load_tiny_model(dir.path());
    RecordingHandler handler;
    handler.mutate = halve;
    calq::calib::LayerwiseRunner(*model, windows, options).run(handler);
    // The model now holds the halved weights: its plain forward shows what each linear must
    // have seen, including o after q,k,v were halved and layer 1 after all of layer 0.
    const auto expected = capture_inputs(*model, windows);
    for (const auto& [key, x] : expected) {
      INFO("layer " << key.first << " " << key.second);
      check_stats_match(handler.seen.at(key), x, 4);
    }
  }
  SECTION("propagate float (AWQ protocol): the next layer sees the float layer's output") {
    auto model = calq::test::load_tiny_model(dir.path());
    const auto float_inputs = capture_inputs(*model, windows);
    RecordingHandler handler;
    handler.mutate = halve;
    handler.propagate = false;
    calq::calib::LayerwiseRunner(*model, windows, options).run(handler);
    for (const std::string name : {"attn.q", "attn.k", "attn.v"}) {
      for (int64_t layer = 0; layer < 2; ++layer) {
        INFO("layer " << layer << " " << name);
        check_stats_match(handler.seen.at({layer, name}), float_inputs.at({layer, name}), 4);
      }
    }
    // Inside the layer the protocol is still sequential: o saw the halved q,k,v.
    auto reference = calq::test::load_tiny_model(dir.path());
    for (const std::string name : {"attn.q", "attn.k", "attn.v"})
      reference->layer(0).linear(name).weight.mul_(0.5);
    check_stats_match(handler.seen.at({0, "attn.o"}),
                      capture_inputs(*reference, windows).at({0, "attn.o"}), 4);
  }
}

TEST_CASE("offloaded layer activations give the statistics of in-memory ones, bit for bit",
          "[calib][runner][offload]") {
  calq::test::TempDir dir("calq_runner");
  calq::test::write_tiny_model(dir / "model", {});
  const at::Tensor windows = random_windows(5, 12, 32, 7);
  const auto halve = [](DecoderLayer& layer, int64_t, const std::vector<std::string>& subset) {
    for (const auto& name : subset) layer.linear(name).weight.mul_(0.5);
  };
  for (const bool propagate : {true, false}) {
    INFO("propagate quantized " << propagate);
    std::map<std::pair<int64_t, std::string>, LinearStats> seen[2];
    calq::calib::ActivationPlacement placement[2];
    for (int disk = 0; disk < 2; ++disk) {
      auto model = calq::test::load_tiny_model(dir / "model");
      RecordingHandler handler;
      handler.mutate = halve;
      handler.propagate = propagate;
      calq::calib::RunnerOptions options;
      options.batch_size = 2;
      options.show_progress = false;
      options.offload.mode = disk ? calq::calib::Offload::Disk : calq::calib::Offload::Ram;
      options.offload.dir = (dir / "scratch").string();
      calq::calib::LayerwiseRunner runner(*model, windows, options);
      runner.run(handler);
      seen[disk] = handler.seen;
      placement[disk] = runner.placement();
    }
    CHECK_FALSE(placement[0].on_disk);
    CHECK(placement[1].on_disk);
    CHECK(placement[1].copies == (propagate ? 1 : 2));
    CHECK(placement[1].dir == (dir / "scratch").string());
    // The scratch files are unlinked at creation: nothing is left, whatever ends the run.
    CHECK(std::filesystem::is_empty(dir / "scratch"));
    REQUIRE(seen[0].size() == seen[1].size());
    for (const auto& [key, a] : seen[0]) {
      INFO("layer " << key.first << " " << key.second);
      const LinearStats& b = seen[1].at(key);
      CHECK(at::equal(a.hessian, b.hessian));
      CHECK(at::equal(a.absmax, b.absmax));
      CHECK(at::equal(a.mean_abs, b.mean_abs));
      CHECK(at::equal(a.inputs, b.inputs));
    }
  }
}

TEST_CASE("linears reading one input share its statistics but each owns its Hessian",
          "[calib][runner]") {
  calq::test::TempDir dir("calq_runner");
  calq::test::write_tiny_model(dir.path(), {});
  auto model = calq::test::load_tiny_model(dir.path());
  const at::Tensor windows = random_windows(3, 8, 32, 9);
  // GPTQ damps the Hessian it is handed in place: q's must not be k's.
  class DampingHandler : public RecordingHandler {
   public:
    void process(LayerStep& step) override {
      RecordingHandler::process(step);
      for (const auto& name : step.linears) step.stats.at(name).hessian.add_(1.0);
    }
  } handler;
  calq::calib::RunnerOptions options;
  options.show_progress = false;
  calq::calib::LayerwiseRunner(*model, windows, options).run(handler);
  for (int64_t layer = 0; layer < model->n_layers(); ++layer) {
    const LinearStats& q = handler.seen.at({layer, "attn.q"});
    const LinearStats& k = handler.seen.at({layer, "attn.k"});
    CHECK(at::equal(q.hessian, k.hessian));  // the same input, each damped once
    CHECK(q.hessian.data_ptr() != k.hessian.data_ptr());
  }
}

TEST_CASE("an activation store round-trips windows in memory and on disk; a bad folder is named",
          "[calib][offload]") {
  calq::test::TempDir dir("calq_store");
  at::manual_seed(1);
  const at::Tensor x = at::randn({5, 4, 3}).to(at::kBFloat16);
  for (const bool disk : {false, true}) {
    auto store = calq::calib::ActivationStore::holding(x.clone(), disk, dir.path().string());
    CHECK(store.on_disk() == disk);
    CHECK(store.bytes() == 5 * 4 * 3 * 2);
    CHECK(at::equal(store.read(1, 3), x.narrow(0, 1, 3)));
    store.write(4, x.narrow(0, 0, 1) * 2);
    CHECK(at::equal(store.all().narrow(0, 4, 1), x.narrow(0, 0, 1) * 2));
  }
  std::ofstream(dir / "file") << "x";
  CHECK_THROWS_WITH(calq::calib::ActivationStore(1, 1, 1, at::kFloat, at::kCPU, true,
                                                 (dir / "file" / "sub").string()),
                    Catch::Contains("calibration.offload_dir") && Catch::Contains("file/sub"));
}

TEST_CASE("the same recipe and seed give bitwise identical quantized weights and reports",
          "[calib][runner][gptq]") {
  calq::test::TempDir dir("calq_runner");
  const auto spec = calq::test::small_model();
  calq::test::write_tiny_model(dir / "model", spec);
  std::ofstream(dir / "recipe.yaml") << R"(model: {path: model}
scheme:
  weights: {bits: 3, group_size: 16, sym: false}
passes:
  - gptq: {act_order: true, damp: 0.01, block_size: 8}
)";
  const calq::core::Recipe recipe = calq::core::load_recipe((dir / "recipe.yaml").string());
  calq::calib::CalibrationSet calibration;
  calibration.windows = random_windows(6, 16, 32, 11);

  const auto quantize = [&](int64_t batch_size) {
    auto model = calq::test::load_tiny_model(dir / "model");
    auto passes = calq::algorithms::build_passes(recipe);
    auto result =
        calq::algorithms::quantize_model(*model, recipe, passes, &calibration, batch_size);
    std::vector<at::Tensor> weights;
    for (int64_t i = 0; i < model->n_layers(); ++i) {
      for (const auto& name : model->layer(i).linear_names())
        weights.push_back(model->layer(i).linear(name).weight.clone());
    }
    return std::make_pair(std::move(result), std::move(weights));
  };
  const auto [first, first_weights] = quantize(4);
  const auto [second, second_weights] = quantize(4);
  REQUIRE(first_weights.size() == second_weights.size());
  for (size_t i = 0; i < first_weights.size(); ++i)
    CHECK(at::equal(first_weights[i], second_weights[i]));
  REQUIRE(first.layers.size() == second.layers.size());
  for (size_t l = 0; l < first.layers.size(); ++l) {
    for (const auto& [name, state] : first.layers[l]) {
      const auto& other = second.layers[l].at(name);
      REQUIRE(state.quantized.has_value());
      CHECK(at::equal(state.quantized->codes, other.quantized->codes));
      CHECK(at::equal(state.quantized->scales, other.quantized->scales));
      for (const auto& [figure, value] : state.reports.at("gptq").figures) {
        if (figure == "seconds") continue;
        INFO(name << " " << figure);
        CHECK(value == other.reports.at("gptq").figures.at(figure));  // bitwise, not approx
      }
    }
  }
}

TEST_CASE("the blocked upper-triangle Hessian sum is 2·XᵀX/n, exactly symmetric",
          "[calib][hessian]") {
  // The accumulator keeps only upper-triangle row blocks in double (half the memory of the full
  // matrix), forming each batch's float product block by block, and mirrors the lower triangle.
  // BLAS rounds a block's dot products as it likes (a full sgemm is not even symmetric), so the
  // oracle is the double-precision sum, within float32 rounding of the products.
  at::manual_seed(21);
  for (const int64_t in : {7, 256, 600}) {
    INFO("in " << in);
    calq::calib::StatRequest request;
    request.hessian = true;
    calq::calib::LinearStatsAccumulator acc(request);
    at::Tensor sum = at::zeros({in, in}, at::kDouble);
    int64_t samples = 0;
    for (int batch = 0; batch < 3; ++batch) {
      const at::Tensor x = at::randn({2, 37, in}) * (batch + 1);
      acc.add(x);
      samples += 2;
      const at::Tensor d = x.reshape({-1, in}).to(at::kDouble);
      sum += d.t().matmul(d);
    }
    const at::Tensor expected = sum * (2.0 / static_cast<double>(samples));
    const at::Tensor got = acc.finish().hessian;
    REQUIRE(got.scalar_type() == at::kFloat);
    CHECK(at::equal(got, got.t()));
    CHECK(at::allclose(got.to(at::kDouble), expected, 1e-5, 1e-4));
  }
}
