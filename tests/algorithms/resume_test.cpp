// Resumable runs (algorithms/layer_checkpoints.h): a run stopped right after layer k was saved,
// then resumed from its state folder, ends with the model, states and pass summaries of a run
// that was never stopped — bit for bit, for every kind of per-layer state a pass leaves: codes,
// FP values, static activation scales, LLM.int8 outlier weights, LoRC factors, changed norms
// (SmoothQuant, AWQ) and LKD's carried random-token inputs. tests/cli/resume_test.sh kills real
// runs mid-layer with SIGKILL.
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

#include <ATen/ATen.h>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "algorithms/layer_checkpoints.h"
#include "algorithms/pipeline.h"
#include "calib/calibration_set.h"
#include "core/error.h"
#include "core/model/model.h"
#include "core/recipe.h"
#include "tests/support/temp_dir.h"
#include "tests/support/tiny_model.h"

namespace {

namespace fs = std::filesystem;
using calq::algorithms::LayerCheckpoints;
using calq::algorithms::QuantizationResult;

struct StopAfter : std::runtime_error {
  StopAfter() : std::runtime_error("stopped") {}
};

bool same_bits(const at::Tensor& a, const at::Tensor& b) {
  if (a.defined() != b.defined()) return false;
  if (!a.defined()) return true;
  if (a.scalar_type() != b.scalar_type() || a.sizes() != b.sizes()) return false;
  return at::equal(a.contiguous().reshape({-1}).view(at::kByte), b.contiguous().reshape({-1}).view(at::kByte));
}

/// Pass summaries without their wall-clock figures.
nlohmann::json timeless(nlohmann::json j) {
  if (j.is_object()) {
    for (auto it = j.begin(); it != j.end();) {
      if (it.key() == "seconds") {
        it = j.erase(it);
      } else {
        *it = timeless(*it);
        ++it;
      }
    }
  } else if (j.is_array()) {
    for (auto& x : j) x = timeless(x);
  }
  return j;
}

void require_same(calq::core::Model& a, const QuantizationResult& ra, calq::core::Model& b,
                  const QuantizationResult& rb) {
  REQUIRE(ra.layers.size() == rb.layers.size());
  for (int64_t i = 0; i < a.n_layers(); ++i) {
    INFO("layer " << i);
    calq::core::DecoderLayer& la = a.layer(i);
    calq::core::DecoderLayer& lb = b.layer(i);
    for (const std::string& name : la.linear_names()) {
      INFO(name);
      const calq::core::Linear& x = la.linear(name);
      const calq::core::Linear& y = lb.linear(name);
      CHECK(same_bits(x.weight, y.weight));
      CHECK(same_bits(x.bias, y.bias));
      // Every extension (activation quantizers and static scales, LLM.int8, LoRC factors), in
      // order, saving the same settings and the same tensor bits.
      REQUIRE(x.extensions().size() == y.extensions().size());
      for (size_t e = 0; e < x.extensions().size(); ++e) {
        REQUIRE(x.extensions()[e]->kind() == y.extensions()[e]->kind());
        INFO(x.extensions()[e]->kind());
        const calq::core::ExtensionState sx = x.extensions()[e]->save();
        const calq::core::ExtensionState sy = y.extensions()[e]->save();
        CHECK(sx.settings == sy.settings);
        REQUIRE(sx.tensors.size() == sy.tensors.size());
        for (const auto& [key, t] : sx.tensors) CHECK(same_bits(t, sy.tensors.at(key)));
      }
    }
    for (const char* norm : {"norm.attn", "norm.mlp"}) {
      CHECK(same_bits(la.norm(norm).weight, lb.norm(norm).weight));
      CHECK(same_bits(la.norm(norm).bias, lb.norm(norm).bias));
    }
    const auto& sa = ra.layers[static_cast<size_t>(i)];
    const auto& sb = rb.layers[static_cast<size_t>(i)];
    REQUIRE(sa.size() == sb.size());
    for (const auto& [name, state] : sa) {
      INFO("state " << name);
      const auto& other = sb.at(name);
      REQUIRE(state.quantized.has_value() == other.quantized.has_value());
      if (state.quantized) {
        CHECK(same_bits(state.quantized->codes, other.quantized->codes));
        CHECK(same_bits(state.quantized->scales, other.quantized->scales));
        CHECK(same_bits(state.quantized->zeros, other.quantized->zeros));
        CHECK(same_bits(state.quantized->g_idx, other.quantized->g_idx));
        CHECK(state.quantized->bits == other.quantized->bits);
        CHECK(state.quantized->grid == other.quantized->grid);
        CHECK(state.quantized->scale_dtype == other.quantized->scale_dtype);
      }
      REQUIRE(state.fp_quantized.has_value() == other.fp_quantized.has_value());
      if (state.fp_quantized) CHECK(same_bits(state.fp_quantized->values, other.fp_quantized->values));
      REQUIRE(state.reports.size() == other.reports.size());
      for (const auto& [pass, report] : state.reports) {
        const auto& o = other.reports.at(pass);
        CHECK(report.notes == o.notes);
        CHECK(report.flags == o.flags);
        for (const auto& [key, value] : report.figures) {
          if (key.find("seconds") != std::string::npos) continue;
          INFO(pass << " " << key);
          CHECK(std::memcmp(&value, &o.figures.at(key), sizeof value) == 0);
        }
      }
    }
  }
  REQUIRE(ra.pass_summaries.size() == rb.pass_summaries.size());
  for (const auto& [pass, summary] : ra.pass_summaries) {
    CHECK(timeless(nlohmann::json::parse(summary)) ==
          timeless(nlohmann::json::parse(rb.pass_summaries.at(pass))));
  }
}

}  // namespace

TEST_CASE("a run stopped after any layer and resumed equals an uninterrupted run",
          "[resume][algorithms]") {
  calq::test::TempDir dir("calq_resume");
  calq::test::TinyModelSpec spec;
  spec.layers = 3;
  spec.seed = 11;
  calq::test::write_tiny_model(dir / "model", spec);
  calq::calib::CalibrationSet calibration;
  at::manual_seed(2);
  calibration.windows = at::randint(0, spec.vocab, {8, 16}, at::kLong);

  struct Case {
    const char* label;
    const char* scheme;
    const char* passes;
  };
  const Case cases[] = {
      {"gptq act-order, static W8A8 activations",
       "  weights: {bits: 4, group_size: 8, sym: false, grid: gptq}\n"
       "  activations: {bits: 8, granularity: tensor, dynamic: false, sym: true}\n",
       "  - gptq: {act_order: true}\n"},
      {"smoothquant then gptq, bmm inputs",
       "  weights: {bits: 8, group_size: -1, sym: true, grid: absmax}\n"
       "  activations: {bits: 8, granularity: token, dynamic: true, sym: true, bmm_inputs: true}\n",
       "  - smoothquant: {alpha: 0.5}\n  - gptq\n"},
      {"awq (float propagation, scaled norms)",
       "  weights: {bits: 4, group_size: 8, sym: false, grid: awq}\n",
       "  - awq: {n_grid: 4, clip_grid: 4}\n"},
      {"rtn + lorc", "  weights: {bits: 3, group_size: 8, sym: false}\n",
       "  - rtn\n  - lorc: {rank: 2}\n"},
      {"llm_int8", "  weights: {bits: 8, group_size: -1, sym: true, grid: absmax}\n",
       "  - llm_int8: {threshold: 1.0, outlier_weights: float}\n"},
      {"lkd on random tokens (carried inputs)",
       "  weights: {bits: 4, group_size: 8, sym: true, grid: gptq}\n",
       "  - lkd: {steps: 5, lr: 0.0005, batch_windows: 2, inputs: random_tokens, random_windows: 4, "
       "random_seqlen: 8}\n  - rtn\n"},
      {"fp4 weights (FP values)",
       "  weights: {format: fp4_e2m1, group_size: 8}\n", "  - rtn\n"},
  };
  for (const Case& c : cases) {
    for (int64_t stop : {0, 1, 2}) {
      DYNAMIC_SECTION(c.label << ", stopped after layer " << stop) {
        std::ofstream(dir / "r.yaml") << "model: {path: model}\nscheme:\n" << c.scheme
                                      << "passes:\n" << c.passes;
        const calq::core::Recipe recipe = calq::core::load_recipe((dir / "r.yaml").string());
        const fs::path state = dir / ("state_" + std::to_string(stop));
        fs::remove_all(state);

        auto reference = calq::test::load_tiny_model(dir / "model");
        auto ref_passes = calq::algorithms::build_passes(recipe);
        const QuantizationResult ref =
            calq::algorithms::quantize_model(*reference, recipe, ref_passes, &calibration, 2);

        {
          auto stopped = calq::test::load_tiny_model(dir / "model");
          auto passes = calq::algorithms::build_passes(recipe);
          LayerCheckpoints checkpoints(state.string(), "test");
          const calq::algorithms::LayerSink stop_after =
              [stop](int64_t i, calq::core::DecoderLayer&, auto&) {
                if (i == stop) throw StopAfter();
              };
          CHECK_THROWS_AS(calq::algorithms::quantize_model(*stopped, recipe, passes, &calibration,
                                                           2, {}, stop_after, &checkpoints),
                          StopAfter);
          CHECK(checkpoints.last_complete() == stop);
        }
        auto resumed = calq::test::load_tiny_model(dir / "model");
        auto passes = calq::algorithms::build_passes(recipe);
        LayerCheckpoints checkpoints(state.string(), "test");
        const QuantizationResult result = calq::algorithms::quantize_model(
            *resumed, recipe, passes, &calibration, 2, {}, {}, &checkpoints);
        require_same(*reference, ref, *resumed, result);
      }
    }
  }
}

TEST_CASE("resume state from another run is refused", "[resume][algorithms]") {
  calq::test::TempDir dir("calq_resume_other");
  calq::test::TinyModelSpec spec;
  calq::test::write_tiny_model(dir / "model", spec);
  std::ofstream(dir / "r.yaml") << "model: {path: model}\nscheme:\n  weights: {bits: 4, group_size: 8}\n"
                                   "passes: [rtn]\n";
  const calq::core::Recipe recipe = calq::core::load_recipe((dir / "r.yaml").string());
  auto model = calq::test::load_tiny_model(dir / "model");
  auto passes = calq::algorithms::build_passes(recipe);
  {
    LayerCheckpoints checkpoints((dir / "state").string(), "recipe a");
    calq::algorithms::quantize_model(*model, recipe, passes, nullptr, 2, {}, {}, &checkpoints);
    CHECK(checkpoints.last_complete() == 1);
  }
  LayerCheckpoints other((dir / "state").string(), "recipe b");
  CHECK_THROWS_WITH(other.last_complete(), Catch::Contains("saved by a different run (recipe a)") &&
                                               Catch::Contains("this one is recipe b"));
  fs::remove(dir / "state" / "layer-00000.safetensors");
  LayerCheckpoints gap((dir / "state").string(), "recipe a");
  CHECK_THROWS_WITH(gap.last_complete(), Catch::Contains("the state of layer 0 is missing"));
}
