// Numerical guards (issue #9): a NaN or Inf in a weight, a calibration activation or a Hessian
// fails the run with the layer, the linear and the stage; GPTQ escalates damp (×10 up to
// gptq.max_damp) on a Hessian that is not positive definite and reports how far, then fails
// naming the damp tried; dead input channels are counted per linear.
#include <cmath>
#include <fstream>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <catch2/catch.hpp>

#include "algorithms/pass.h"
#include "algorithms/pipeline.h"
#include "algorithms/registry.h"
#include "calib/calibration_set.h"
#include "calib/linear_stats.h"
#include "core/error.h"
#include "core/model/model.h"
#include "core/numeric_guard.h"
#include "core/options.h"
#include "core/recipe.h"
#include "tests/support/temp_dir.h"
#include "tests/support/tiny_model.h"

namespace {

using Catch::Matchers::Contains;
using calq::algorithms::QuantizationResult;
namespace test = calq::test;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

/// A tiny Llama (hidden 16, intermediate 24, 2 layers) with `edit` applied to its tensors.
void write_model(const test::TempDir& dir, std::function<void(calq::core::NamedTensors&)> edit) {
  test::TinyModelSpec spec;
  spec.seed = 3;
  spec.edit = std::move(edit);
  test::write_tiny_model(dir / "model", spec);
}

at::Tensor& tensor(calq::core::NamedTensors& tensors, const std::string& name) {
  for (auto& [n, t] : tensors) {
    if (n == name) return t;
  }
  FAIL("no tensor " << name);
  throw;
}

calq::core::Recipe recipe(const test::TempDir& dir, const std::string& passes) {
  std::ofstream(dir / "recipe.yaml") << "model: {path: model}\n"
                                        "scheme:\n  weights: {bits: 4, group_size: -1}\n"
                                        "passes:\n"
                                     << passes;
  return calq::core::load_recipe((dir / "recipe.yaml").string());
}

/// Quantizes the tiny model with `passes`, calibrated on `windows` (undefined: no calibration).
QuantizationResult run(const test::TempDir& dir, const std::string& passes,
                       const at::Tensor& windows) {
  const calq::core::Recipe r = recipe(dir, passes);
  auto model = test::load_tiny_model(dir / "model");
  auto built = calq::algorithms::build_passes(r);
  calq::calib::CalibrationSet calibration;
  calibration.windows = windows;
  return calq::algorithms::quantize_model(*model, r, built,
                                          windows.defined() ? &calibration : nullptr, 2);
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const calq::Error& e) {
    return e.what();
  }
  return "(no error)";
}

at::Tensor random_windows(uint64_t seed) {
  at::manual_seed(seed);
  return at::randint(1, 32, {4, 12}, at::kLong);
}

double figure(const QuantizationResult& r, size_t layer, const std::string& linear,
              const std::string& key) {
  return r.layers.at(layer).at(linear).reports.at("gptq").figures.at(key);
}

/// A transform that changes nothing but asks for every linear's Hessian.
class HessianAsker : public calq::algorithms::Pass {
 public:
  const char* name() const override { return "hessian_asker"; }
  const calq::algorithms::PassTraits& traits() const override {
    static const calq::algorithms::PassTraits transform{};
    return transform;
  }
  calq::calib::StatRequest needs(const calq::algorithms::LinearTarget&) const override {
    calq::calib::StatRequest request;
    request.hessian = true;
    return request;
  }
  void apply(calq::algorithms::PassStep&) override {}
};

}  // namespace

TEST_CASE("count_non_finite counts NaN and Inf in every float dtype and layout", "[guards]") {
  at::Tensor t = at::zeros({4, 8});
  t[1][2] = kNaN;
  t[3][7] = kInf;
  t[0][0] = -kInf;
  CHECK(calq::core::count_non_finite(t) == 3);
  CHECK(calq::core::count_non_finite(t.t()) == 3);  // strided view
  CHECK(calq::core::count_non_finite(t.to(at::kBFloat16)) == 3);
  CHECK(calq::core::count_non_finite(t.to(at::kHalf)) == 3);
  CHECK(calq::core::count_non_finite(t.to(at::kDouble)) == 3);
  CHECK(calq::core::count_non_finite(at::full({3}, 1e300, at::kDouble)) == 0);  // not an overflow
  CHECK(calq::core::count_non_finite(at::zeros({4, 8})) == 0);
  CHECK(calq::core::count_non_finite(at::ones({3}, at::kInt)) == 0);
  CHECK(calq::core::count_non_finite(at::Tensor()) == 0);
  at::Tensor big = at::zeros({1 << 19});  // several parallel chunks
  big[17] = kNaN;
  big[(1 << 19) - 1] = kInf;
  CHECK(calq::core::count_non_finite(big) == 2);

  const calq::core::GuardSite site{3, "mlp.down", "weights as loaded"};
  CHECK_NOTHROW(calq::core::require_finite(at::zeros({4, 8}), site, "weight", "hint"));
  CHECK_THROWS_WITH(calq::core::require_finite(t, site, "weight", "hint"),
                    Contains("layer 3 mlp.down: weight has 3 non-finite (NaN/Inf) entries of 32 "
                             "(stage: weights as loaded); expected finite values; hint"));
}

TEST_CASE("a NaN weight fails the run naming the layer, the linear and the stage", "[guards]") {
  test::TempDir dir("calq_guards");
  write_model(dir, [](calq::core::NamedTensors& t) {
    tensor(t, "model.layers.1.mlp.down_proj.weight")[3][5] = kNaN;
  });
  const auto expect_clear = [](const std::string& message) {
    CHECK_THAT(message, Contains("layer 1 mlp.down: weight has 1 non-finite (NaN/Inf) entry") &&
                            Contains("(stage: weights as loaded)") &&
                            Contains("model.layers.1.mlp.down_proj.weight"));
    CHECK(message.find('\n') == std::string::npos);
  };
  expect_clear(error_of([&] { run(dir, "  - gptq: {}\n", random_windows(1)); }));
  expect_clear(error_of([&] { run(dir, "  - rtn\n", at::Tensor()); }));  // no calibration

  // The same model without the NaN quantizes, and every linear says its weights were checked.
  write_model(dir, {});
  const QuantizationResult r = run(dir, "  - gptq: {}\n", random_windows(1));
  for (size_t layer = 0; layer < 2; ++layer) {
    for (const auto& [name, state] : r.layers.at(layer)) {
      INFO(layer << " " << name);
      CHECK(state.reports.at("gptq").flags.at("weights_finite"));
      CHECK(state.reports.at("gptq").flags.at("hessian_finite"));
    }
  }
  const QuantizationResult rtn = run(dir, "  - rtn\n", at::Tensor());
  CHECK(rtn.layers.at(1).at("mlp.down").reports.at("rtn").flags.at("weights_finite"));
}

TEST_CASE("NaN calibration activations fail at the first linear that sees them", "[guards]") {
  test::TempDir dir("calq_guards");
  write_model(dir, [](calq::core::NamedTensors& t) {
    tensor(t, "model.embed_tokens.weight")[0][4] = kNaN;  // token 0: not in random_windows
  });
  CHECK_NOTHROW(run(dir, "  - gptq: {}\n", random_windows(2)));
  at::Tensor windows = random_windows(2);
  windows[1][6] = 0;
  const std::string message = error_of([&] { run(dir, "  - gptq: {}\n", windows); });
  CHECK_THAT(message, Contains("layer 0 attn.") &&
                          Contains("calibration inputs have 16 non-finite (NaN/Inf) entries") &&
                          Contains("(stage: calibration statistics)"));
}

TEST_CASE("statistics with non-finite inputs or an overflowed Hessian are refused", "[guards]") {
  calq::calib::StatRequest request;
  request.hessian = true;
  request.absmax = true;

  calq::calib::LinearStatsAccumulator finite(request);
  finite.add(at::randn({2, 5, 8}));
  CHECK_NOTHROW(calq::calib::require_finite(finite.finish(), 2, "mlp.up"));

  calq::calib::LinearStatsAccumulator nan_input(request);
  at::Tensor x = at::randn({2, 5, 8});
  x[1][2][3] = kNaN;
  nan_input.add(at::randn({2, 5, 8}));
  nan_input.add(x);
  const calq::calib::LinearStats with_nan = nan_input.finish();
  CHECK(with_nan.non_finite_inputs == 1);
  CHECK_THROWS_WITH(calq::calib::require_finite(with_nan, 2, "mlp.up"),
                    Contains("layer 2 mlp.up: calibration inputs have 1 non-finite (NaN/Inf) "
                             "entries in 20 tokens (stage: calibration statistics)"));

  // Finite inputs of 1e20: xᵀx overflows float32.
  calq::calib::LinearStatsAccumulator huge(request);
  huge.add(at::full({1, 4, 8}, 1e20f));
  const calq::calib::LinearStats overflowed = huge.finish();
  CHECK(overflowed.non_finite_inputs == 0);
  CHECK_THROWS_WITH(calq::calib::require_finite(overflowed, 2, "mlp.up"),
                    Contains("layer 2 mlp.up: Hessian has 64 non-finite (NaN/Inf) entries of 64 "
                             "(stage: calibration statistics)") &&
                        Contains("overflowed"));
}

TEST_CASE("gptq on identical calibration windows escalates damp and reports it",
          "[guards][gptq]") {
  test::TempDir dir("calq_guards");
  write_model(dir, {});
  // Every window the same 12 tokens: X has at most 12 distinct rows, fewer than the 16 or 24
  // inputs of each linear, so H is singular.
  const at::Tensor windows = random_windows(4).narrow(0, 0, 1).repeat({4, 1});

  const QuantizationResult plain = run(dir, "  - gptq: {}\n", windows);
  for (size_t layer = 0; layer < 2; ++layer) {
    for (const auto& [name, state] : plain.layers.at(layer)) {
      INFO(layer << " " << name);
      CHECK(figure(plain, layer, name, "damp_escalations") == 0);  // λ = 0.01·mean(diag) is enough
      CHECK(figure(plain, layer, name, "damp") == 0.01);
    }
  }

  // A damp far below float32 rounding: the factorization fails and damp rises ×10 per retry.
  const QuantizationResult tiny = run(dir, "  - gptq: {damp: 1.0e-9}\n", windows);
  int escalated = 0;
  for (size_t layer = 0; layer < 2; ++layer) {
    for (const auto& [name, state] : tiny.layers.at(layer)) {
      INFO(layer << " " << name);
      const double n = figure(tiny, layer, name, "damp_escalations");
      CHECK(figure(tiny, layer, name, "damp") == Approx(1e-9 * std::pow(10.0, n)));
      escalated += n > 0;
    }
  }
  CHECK(escalated > 0);

  // No room to escalate: a clear error naming the linear and the damp tried, never RTN.
  const std::string message =
      error_of([&] { run(dir, "  - gptq: {damp: 1.0e-9, max_damp: 1.0e-9}\n", windows); });
  CHECK_THAT(message, Contains("layer ") && Contains(": gptq: the damped Hessian") &&
                          Contains("not positive definite") &&
                          Contains("damp 1e-09 after 0 escalation(s)") &&
                          Contains("gptq.max_damp"));
}

TEST_CASE("one repeated token: dead input channels are counted per linear", "[guards][gptq]") {
  test::TempDir dir("calq_guards");
  write_model(dir, [](calq::core::NamedTensors& t) {
    at::Tensor& embed = tensor(t, "model.embed_tokens.weight");
    embed[5][2] = 0.0f;  // RMSNorm keeps a zero channel zero: attn.q/k/v of layer 0 never see it
    embed[5][9] = 0.0f;
  });
  const at::Tensor windows = at::full({4, 12}, 5, at::kLong);
  const QuantizationResult r = run(dir, "  - gptq: {}\n", windows);
  for (const std::string name : {"attn.q", "attn.k", "attn.v"}) {
    INFO(name);
    CHECK(figure(r, 0, name, "dead_columns") == 2);
  }
  CHECK(figure(r, 0, "mlp.up", "dead_columns") == 0);  // the residual added attention's output
  for (size_t layer = 0; layer < 2; ++layer) {
    for (const auto& [name, state] : r.layers.at(layer)) {
      INFO(layer << " " << name);
      CHECK(figure(r, layer, name, "damp") ==
            Approx(0.01 * std::pow(10.0, figure(r, layer, name, "damp_escalations"))));
    }
  }

  // RTN counts them too where another pass gathered a Hessian (none does in plain RTN).
  const calq::core::Recipe rtn_recipe = recipe(dir, "  - rtn\n");
  auto model = test::load_tiny_model(dir / "model");
  std::vector<std::unique_ptr<calq::algorithms::Pass>> passes;
  passes.push_back(std::make_unique<HessianAsker>());
  passes.push_back(calq::algorithms::make_pass("rtn", calq::core::Options(), rtn_recipe.scheme));
  calq::calib::CalibrationSet calibration;
  calibration.windows = windows;
  const QuantizationResult rtn =
      calq::algorithms::quantize_model(*model, rtn_recipe, passes, &calibration, 2);
  CHECK(rtn.layers.at(0).at("attn.q").reports.at("rtn").figures.at("dead_columns") == 2);
  CHECK(rtn.layers.at(0).at("mlp.up").reports.at("rtn").figures.at("dead_columns") == 0);
}

TEST_CASE("gptq.max_damp below damp is refused naming the key", "[guards][gptq]") {
  test::TempDir dir("calq_guards");
  CHECK_THAT(error_of([&] { calq::algorithms::build_passes(recipe(dir, "  - gptq: {damp: 0.5, "
                                                                        "max_damp: 0.1}\n")); }),
             Contains("passes.0.gptq.max_damp") && Contains("below damp 0.5"));
}
