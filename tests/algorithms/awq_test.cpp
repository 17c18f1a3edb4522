// AWQ (docs/algorithms.md §4): with the ratio grid reduced to 0 and no clipping it is RTN, bit for
// bit; folding the searched scales leaves the float layer's function unchanged; the clip search
// matches a brute-force oracle written from §4.4; GQA layers skip v→o; schemes and options AWQ
// cannot honour are refused before any work.
#include "algorithms/awq.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <catch2/catch.hpp>

#include "algorithms/pipeline.h"
#include "calib/calibration_set.h"
#include "calib/layerwise_runner.h"
#include "core/error.h"
#include "core/model/model.h"
#include "core/quant/quantizer.h"
#include "core/recipe.h"
#include "tests/support/temp_dir.h"
#include "tests/support/tiny_model.h"

namespace {

using calq::algorithms::AwqFlavor;
using calq::algorithms::BlockGroups;
using calq::algorithms::ScaleGroup;
using calq::calib::LayerStep;
using calq::core::DecoderLayer;
using calq::core::Model;

constexpr uint64_t kSeed = 7;
// Folding s into the prev op and the columns reorders float32 roundings only (γ/s then ·s).
constexpr double kFoldRelTol = 1e-5;

at::Tensor random_windows(int64_t n, int64_t seq, int64_t vocab, uint64_t seed) {
  at::manual_seed(seed);
  return at::randint(0, vocab, {n, seq}, at::kLong);
}

calq::test::TinyModelSpec tiny_spec(const std::string& family, int64_t kv_heads = 2) {
  calq::test::TinyModelSpec spec;
  spec.model_type = family;
  spec.hidden = 32;
  spec.intermediate = 48;
  spec.heads = 4;
  spec.kv_heads = kv_heads;
  spec.seed = kSeed;
  return spec;
}

calq::core::Recipe write_recipe(const calq::test::TempDir& dir,
                                const std::string& name,
                                const std::string& scheme,
                                const std::string& passes,
                                const std::string& model = "model") {
  const auto path = dir / name;
  std::ofstream(path) << "model: {path: " << model << "}\nscheme:\n  weights: " << scheme
                      << "\npasses:\n"
                      << passes;
  return calq::core::load_recipe(path.string());
}

std::vector<at::Tensor> all_weights(Model& model) {
  std::vector<at::Tensor> out;
  for (int64_t i = 0; i < model.n_layers(); ++i) {
    DecoderLayer& layer = model.layer(i);
    for (const auto& name : layer.linear_names())
      out.push_back(layer.linear(name).weight.clone());
    for (const char* norm : {"norm.attn", "norm.mlp"}) {
      out.push_back(layer.norm(norm).weight.clone());
      if (layer.norm(norm).bias.defined())
        out.push_back(layer.norm(norm).bias.clone());
    }
  }
  return out;
}

/// Loads the tiny model at `model_dir`, quantizes it with `recipe` (batches of 2 windows) and
/// returns the result with every weight afterwards.
std::pair<calq::algorithms::QuantizationResult, std::vector<at::Tensor>> quantize_tiny(
    const std::filesystem::path& model_dir, const calq::core::Recipe& recipe,
    const calq::calib::CalibrationSet& calibration) {
  auto model = calq::test::load_tiny_model(model_dir);
  auto passes = calq::algorithms::build_passes(recipe);
  auto result = calq::algorithms::quantize_model(*model, recipe, passes, &calibration, 2);
  return {std::move(result), all_weights(*model)};
}

double max_rel_diff(const at::Tensor& got, const at::Tensor& want) {
  return (got - want).abs().max().item<double>() / want.abs().max().item<double>();
}

/// Runs the AWQ scale search on every layer of the float model (whole-layer statistics, float
/// propagation, as the pass) and folds the chosen scales without quantizing; then folds forced
/// ratio-0.9 scales on top. Records the layer's output before and after each fold.
class FoldingHandler : public calq::calib::LayerHandler {
 public:
  std::vector<size_t> n_groups;
  std::vector<double> errors;
  std::vector<double> spread;  // max s / min s of the forced scales

  void begin_layer(DecoderLayer&, int64_t) override {}
  std::vector<std::vector<std::string>> schedule(DecoderLayer& layer) override {
    return {layer.linear_names()};
  }
  calq::calib::Requirements needs(DecoderLayer&, const std::vector<std::string>& subset) override {
    calq::calib::Requirements r;
    for (const auto& name : subset)
      r[name] = {false, false, true, true};
    return r;
  }
  void process(LayerStep& step) override {
    std::map<std::string, calq::core::QuantSpec> specs;
    for (const auto& name : step.linears)
      specs[name] = calq::core::weight_spec(3, calq::core::Grid::AwqAsym, 16);
    const BlockGroups blocks =
        calq::algorithms::awq_scale_groups(step.model.layer_schema(step.layer_index), step.layer, step.linears);
    n_groups.push_back(blocks.groups.size());
    const at::Tensor before = step.forward(step.layer_inputs.all());
    const auto chosen = calq::algorithms::search_block_scales(step.layer, step.model, blocks.groups,
                                                              step.stats, specs, {});
    // The search restores every weight it tried.
    CHECK(at::equal(step.forward(step.layer_inputs.all()), before));
    for (const auto& g : chosen)
      calq::algorithms::apply_group_scales(step.layer, g.group, g.scales);
    errors.push_back(max_rel_diff(step.forward(step.layer_inputs.all()), before));
    for (const ScaleGroup& group : blocks.groups) {
      const at::Tensor s =
          calq::algorithms::candidate_scales(step.stats.at(group.linears.front()).mean_abs,
                                             at::Tensor(), {0.9, false}, AwqFlavor::LlmAwq);
      spread.push_back((s.max() / s.min()).item<double>());
      calq::algorithms::apply_group_scales(step.layer, group, s);
    }
    errors.push_back(max_rel_diff(step.forward(step.layer_inputs.all()), before));
  }
  bool propagate_quantized() const override { return false; }
  void end_layer(DecoderLayer&, int64_t) override {}
};

/// §4.4 by hand: loops over rows, groups and candidates; awq_asym written out in float32
/// (s = max(max − min, 1e−5)/qmax, z = clamp(−round(min/s), 0, qmax)); dot products in double.
at::Tensor oracle_shrink(const at::Tensor& w_in,
                         const at::Tensor& x_in,
                         int bits,
                         int64_t g,
                         double max_shrink,
                         int grid,
                         int64_t n_tokens) {
  const at::Tensor w = w_in.contiguous();
  const int64_t out = w.size(0), in = w.size(1);
  const int64_t step = std::max<int64_t>(1, x_in.size(0) / n_tokens);
  const at::Tensor x = x_in.slice(0, 0, x_in.size(0), step).to(at::kDouble).contiguous();
  const int64_t t_count = x.size(0);
  const int64_t n_groups = (in + g - 1) / g;
  const float qmax = static_cast<float>((1 << bits) - 1);
  const auto* wp = w.data_ptr<float>();
  const auto* xp = x.data_ptr<double>();
  at::Tensor shrink = at::empty({out, n_groups}, at::kFloat);
  for (int64_t o = 0; o < out; ++o) {
    for (int64_t k = 0; k < n_groups; ++k) {
      const int64_t c0 = k * g, c1 = std::min(in, c0 + g);
      float m0 = 0.0f;
      for (int64_t c = c0; c < c1; ++c)
        m0 = std::max(m0, std::abs(wp[o * in + c]));
      double best = std::numeric_limits<double>::infinity();
      float best_factor = 1.0f;
      for (int i = 0; i < static_cast<int>(max_shrink * grid); ++i) {
        const double factor = 1.0 - static_cast<double>(i) / grid;
        const float m = m0 * static_cast<float>(factor);
        std::vector<float> wc;
        for (int64_t c = c0; c < c1; ++c)
          wc.push_back(std::min(std::max(wp[o * in + c], -m), m));
        const float lo = *std::min_element(wc.begin(), wc.end());
        const float hi = *std::max_element(wc.begin(), wc.end());
        const float s = std::max(hi - lo, 1e-5f) / qmax;
        const float z = std::min(std::max(-std::nearbyint(lo / s), 0.0f), qmax);
        double err = 0.0;
        for (int64_t t = 0; t < t_count; ++t) {
          double y0 = 0.0, y = 0.0;
          for (int64_t c = c0; c < c1; ++c) {
            const float q = std::min(std::max(std::nearbyint(wc[c - c0] / s) + z, 0.0f), qmax);
            y0 += xp[t * in + c] * wp[o * in + c];
            y += xp[t * in + c] * static_cast<double>(s * (q - z));
          }
          err += (y - y0) * (y - y0);
        }
        err /= static_cast<double>(t_count);
        if (err < best) {
          best = err;
          best_factor = static_cast<float>(factor);
        }
      }
      shrink[o][k] = best_factor;
    }
  }
  return shrink;
}

}  // namespace

TEST_CASE("awq with only ratio 0 and no clipping equals rtn bit for bit", "[awq][algorithms]") {
  const std::string family = GENERATE(as<std::string>{}, "llama", "opt", "gpt2", "phi3");
  INFO(family);
  calq::test::TempDir dir("calq_awq");
  calq::test::write_tiny_model(dir / "model", tiny_spec(family));
  const std::string scheme = "{bits: 3, group_size: 16, sym: false, grid: awq}";
  const auto awq = write_recipe(dir, "awq.yaml", scheme, "  - awq: {n_grid: 1, clip: false}\n");
  const auto rtn = write_recipe(dir, "rtn.yaml", scheme, "  - rtn\n");
  calq::calib::CalibrationSet calibration;
  calibration.windows = random_windows(4, 12, 32, kSeed);

  const auto run = [&](const calq::core::Recipe& recipe) {
    return quantize_tiny(dir / "model", recipe, calibration);
  };
  const auto [awq_result, awq_weights] = run(awq);
  const auto [rtn_result, rtn_weights] = run(rtn);
  CHECK(awq_result.used_calibration);
  REQUIRE(awq_weights.size() == rtn_weights.size());
  for (size_t i = 0; i < awq_weights.size(); ++i)
    CHECK(at::equal(awq_weights[i], rtn_weights[i]));
  for (size_t l = 0; l < awq_result.layers.size(); ++l) {
    for (const auto& [name, state] : awq_result.layers[l]) {
      INFO("layer " << l << " " << name);
      REQUIRE(state.quantized.has_value());
      CHECK(at::equal(state.quantized->codes, rtn_result.layers[l].at(name).quantized->codes));
    }
  }
}

TEST_CASE("folding the searched awq scales leaves the float layer output unchanged",
          "[awq][algorithms]") {
  // phi3: the fused pairs fold into a slice of rows (v of qkv_proj, up of gate_up_proj).
  const std::string family = GENERATE(as<std::string>{}, "llama", "opt", "gpt2", "phi3");
  INFO(family);
  calq::test::TempDir dir("calq_awq");
  // kv_heads = heads: no GQA, so Llama folds v→o (Phi-3 qkv→o) too.
  calq::test::write_tiny_model(dir / "model", tiny_spec(family, /*kv_heads=*/4));
  auto model = calq::test::load_tiny_model(dir / "model");
  calq::calib::RunnerOptions options;
  options.show_progress = false;
  FoldingHandler handler;
  calq::calib::LayerwiseRunner(*model, random_windows(4, 12, 32, kSeed), options).run(handler);
  REQUIRE(handler.n_groups.size() == 2);
  CHECK(handler.n_groups[0] == (family == "gpt2" ? 3u : 4u));
  for (double e : handler.errors)
    CHECK(e <= kFoldRelTol);
  double widest = 0.0;
  for (double s : handler.spread)
    widest = std::max(widest, s);
  CHECK(widest > 1.5);  // the forced scales really move the weights
}

TEST_CASE("awq clip search matches a brute-force oracle", "[awq][algorithms]") {
  at::manual_seed(kSeed);
  // 40 inputs in groups of 16: two full groups and a short one of 8; per channel: one of 40.
  const int64_t group_size = GENERATE(as<int64_t>{}, 16, -1);
  const int64_t n_tokens = GENERATE(as<int64_t>{}, 1100, 300);  // step 2, and step 1 (N < 512)
  INFO("group_size " << group_size << " tokens " << n_tokens);
  const at::Tensor w = at::randn({70, 40}) * at::rand({1, 40}) * 2;  // 70 rows: batches 64 + 6
  const at::Tensor x = at::randn({n_tokens, 40}) * (at::rand({1, 40}) + 0.1);
  calq::core::QuantSpec spec = calq::core::weight_spec(3, calq::core::Grid::AwqAsym, group_size);
  spec.scale_dtype = at::kFloat;
  const calq::algorithms::ClipOptions options;  // max_shrink 0.5, grid 20, 512 tokens
  const auto result = calq::algorithms::awq_clip_search(w, x, spec, options);
  const int64_t g = group_size > 0 ? group_size : 40;
  const at::Tensor expected = oracle_shrink(w, x, 3, g, 0.5, 20, 512);
  CHECK(result.n_tokens == (n_tokens == 1100 ? 550 : 300));
  REQUIRE(result.shrink.sizes() == expected.sizes());
  CHECK(at::equal(result.shrink, expected));
  CHECK(result.shrink.min().item<float>() < 1.0f);  // some groups are clipped

  at::Tensor clipped = w.clone();
  calq::algorithms::apply_clip(clipped, result.max_val, spec);
  const at::Tensor index = calq::core::sequential_g_idx(40, group_size).to(at::kLong);
  const at::Tensor bound = result.max_val.index_select(1, index);
  CHECK(at::equal(clipped, at::minimum(at::maximum(w, -bound), bound)));
}

TEST_CASE("awq skips v→o under grouped-query attention and reports its choices",
          "[awq][algorithms]") {
  calq::test::TempDir dir("calq_awq");
  calq::test::write_tiny_model(dir / "gqa", tiny_spec("llama", 2));
  calq::test::write_tiny_model(dir / "mha", tiny_spec("llama", 4));
  const auto describe_groups = [&](const std::string& name) {
    auto model = calq::test::load_tiny_model(dir / name);
    DecoderLayer& layer = model->layer(0);
    const BlockGroups blocks =
        calq::algorithms::awq_scale_groups(model->layer_schema(0), layer, layer.linear_names());
    std::vector<std::string> out;
    for (const auto& g : blocks.groups)
      out.push_back(g.describe());
    return std::make_pair(out, blocks.skipped);
  };
  const auto [gqa, gqa_skipped] = describe_groups("gqa");
  CHECK(gqa == std::vector<std::string>{"norm.attn -> attn.q,attn.k,attn.v",
                                        "norm.mlp -> mlp.gate,mlp.up", "mlp.up -> mlp.down"});
  REQUIRE(gqa_skipped.size() == 1);
  CHECK(gqa_skipped[0].group == "attn.v -> attn.o");
  CHECK_THAT(gqa_skipped[0].reason, Catch::Contains("grouped-query"));
  const auto [mha, mha_skipped] = describe_groups("mha");
  CHECK(mha.size() == 4);
  CHECK(mha[1] == "attn.v -> attn.o");
  CHECK(mha_skipped.empty());

  // The pass writes the skip and its choices into the report.
  const auto recipe =
      write_recipe(dir, "awq.yaml", "{bits: 3, group_size: 16, grid: awq}",
                   "  - awq: {flavor: autoawq, duo_scaling: both, n_grid: 4}\n", "gqa");
  calq::calib::CalibrationSet calibration;
  calibration.windows = random_windows(4, 12, 32, kSeed);
  auto model = calq::test::load_tiny_model(dir / "gqa");
  auto passes = calq::algorithms::build_passes(recipe);
  REQUIRE(passes.size() == 2);  // awq, then the implicit rtn
  const auto result = calq::algorithms::quantize_model(*model, recipe, passes, &calibration, 2);
  CHECK_FALSE(result.propagated_quantized);
  const auto& layer0 = result.layers.at(0);
  CHECK_THAT(layer0.at("attn.o").reports.at("awq").notes.at("skipped_group"),
             Catch::Contains("grouped-query"));
  const auto& q = layer0.at("attn.q").reports.at("awq");
  CHECK(q.notes.at("group") == "norm.attn -> attn.q,attn.k,attn.v");
  CHECK(q.figures.count("clip_shrink_mean") == 0);  // q, k are never clipped
  const double ratio = q.figures.at("ratio");
  CHECK((ratio == 0.0 || ratio == 0.5));  // both: n_grid/2 = 2 ratios, 0 and 1/2
  const auto& down = layer0.at("mlp.down").reports.at("awq");
  CHECK(down.notes.at("group") == "mlp.up -> mlp.down");
  CHECK(down.figures.at("loss") <= down.figures.at("loss_first_candidate"));
  CHECK(down.figures.at("clip_shrink_min") <= down.figures.at("clip_shrink_mean"));
  CHECK(down.figures.at("clip_shrink_mean") <= 1.0);
  CHECK(down.figures.at("clip_shrink_min") >= 0.55);
  CHECK(layer0.at("mlp.down").quantized.has_value());
}

TEST_CASE("awq on Phi-3: fused pairs fold into their slice only, qkv→o skipped under GQA",
          "[awq][algorithms]") {
  calq::test::TempDir dir("calq_awq");
  calq::test::write_tiny_model(dir / "gqa", tiny_spec("phi3", 2));
  calq::test::write_tiny_model(dir / "mha", tiny_spec("phi3", 4));
  {
    auto model = calq::test::load_tiny_model(dir / "gqa");
    const BlockGroups blocks = calq::algorithms::awq_scale_groups(
        model->layer_schema(0), model->layer(0), model->layer(0).linear_names());
    std::vector<std::string> groups;
    for (const auto& g : blocks.groups) groups.push_back(g.describe());
    CHECK(groups == std::vector<std::string>{"norm.attn -> attn.qkv", "norm.mlp -> mlp.gate_up",
                                             "mlp.gate_up -> mlp.down"});
    REQUIRE(blocks.skipped.size() == 1);
    CHECK(blocks.skipped[0].group == "attn.qkv -> attn.o");
    CHECK_THAT(blocks.skipped[0].reason, Catch::Contains("grouped-query"));
    CHECK_THAT(blocks.skipped[0].reason, Catch::Contains("v rows [48, 64)"));
  }
  // Folding a scale into the gate half instead of the up half changes the function: the slice
  // is what keeps it (the folding test above shows the up half does).
  auto model = calq::test::load_tiny_model(dir / "mha");
  DecoderLayer& layer = model->layer(0);
  const BlockGroups blocks = calq::algorithms::awq_scale_groups(model->layer_schema(0), layer,
                                                                layer.linear_names());
  REQUIRE(blocks.groups.size() == 4);
  const ScaleGroup up_down = blocks.groups[3];
  CHECK(up_down.prev_rows_begin == 48);
  CHECK(up_down.prev_rows == 48);
  at::manual_seed(kSeed);
  const at::Tensor h = at::randn({2, 6, 32});
  const at::Tensor s = at::rand({48}) * 3 + 0.5;
  const calq::core::ForwardContext ctx = model->make_context(6);
  const at::Tensor before = layer.mlp(h, ctx);
  const at::Tensor gate_up = layer.linear("mlp.gate_up").weight.clone();
  const at::Tensor down = layer.linear("mlp.down").weight.clone();
  calq::algorithms::apply_group_scales(layer, up_down, s);
  CHECK(max_rel_diff(layer.mlp(h, ctx), before) <= kFoldRelTol);
  CHECK(at::equal(layer.linear("mlp.gate_up").weight.narrow(0, 0, 48), gate_up.narrow(0, 0, 48)));
  layer.linear("mlp.gate_up").weight.copy_(gate_up);
  layer.linear("mlp.down").weight.copy_(down);
  ScaleGroup wrong = up_down;
  wrong.prev_rows_begin = 0;  // the gate half: SiLU is not homogeneous
  calq::algorithms::apply_group_scales(layer, wrong, s);
  CHECK(max_rel_diff(layer.mlp(h, ctx), before) > 1e-2);
}

TEST_CASE("awq grids: 0 … 0.95 without 1.0, and both formulas on half the grid",
          "[awq][algorithms]") {
  calq::algorithms::ScaleSearchOptions options;
  const auto plain = calq::algorithms::scale_candidates(options);
  REQUIRE(plain.size() == 20);
  CHECK(plain.front().ratio == 0.0);
  CHECK(plain.back().ratio == 0.95);
  options.duo_scaling = calq::algorithms::DuoScaling::Both;
  const auto both = calq::algorithms::scale_candidates(options);
  REQUIRE(both.size() == 20);
  CHECK((both[2].ratio == 0.1 && !both[2].duo && both[3].ratio == 0.1 && both[3].duo));
  // s = x̄^r normalised by sqrt(max · min): here x̄ = (1, 4, 16), r = 0.5 -> (1, 2, 4) / 2.
  const at::Tensor s = calq::algorithms::candidate_scales(
      at::tensor({1.0f, 4.0f, 16.0f}), at::Tensor(), {0.5, false}, AwqFlavor::LlmAwq);
  CHECK(at::allclose(s, at::tensor({0.5f, 1.0f, 2.0f})));
}

TEST_CASE("awq refuses schemes and options it cannot honour, naming the key", "[awq][algorithms]") {
  calq::test::TempDir dir("calq_awq");
  const auto rejects = [&](const std::string& scheme, const std::string& awq_options,
                           const std::string& expected) {
    INFO(scheme << " " << awq_options);
    const auto recipe = write_recipe(dir, "r.yaml", scheme, "  - awq: " + awq_options + "\n");
    try {
      calq::algorithms::build_passes(recipe);
      FAIL("accepted");
    } catch (const calq::Error& e) {
      const std::string message = e.what();
      CHECK_THAT(message, Catch::Contains("passes.0.awq"));
      CHECK_THAT(message, Catch::Contains(expected));
      CHECK(message.find('\n') == std::string::npos);
    }
  };
  const std::string int4 = "{bits: 4, group_size: 128, grid: awq}";
  rejects("{format: fp8_e4m3, group_size: -1}", "{}", "scheme.weights.format is fp8_e4m3");
  rejects("{format: nf4, group_size: 64}", "{}", "expected format: int");
  rejects(int4, "{n_grid: 0}", "n_grid");
  rejects(int4, "{flavor: autoawg}", "flavor");
  rejects(int4, "{duo_scaling: true}", "flavor: autoawq");
  rejects(int4, "{flavor: autoawq, duo_scaling: maybe}", "expected true, false or both");
  rejects(int4, "{flavor: autoawq, duo_scaling: both, n_grid: 1}", "n_grid");
  rejects(int4, "{max_shrink: 0.01}", "max_shrink");
  rejects(int4, "{propagate: sideways}", "propagate");
  rejects(int4, "{clip_grd: 20}", "clip_grd");
  rejects(int4, "{max_chunk_memory: lots}", "max_chunk_memory: \"lots\" is not a size");
  rejects(int4, "{max_chunk_memory: 3T}", "max_chunk_memory");
  rejects(int4, "{max_chunk_memory: 0}", "max_chunk_memory: 0 is not a size");
  rejects(int4, "{max_chunk_memory: 1.5}", "max_chunk_memory");
}

TEST_CASE("awq losses in many small chunks choose what one chunk chooses", "[awq][algorithms]") {
  // max_chunk_memory 1 byte: one window per chunk of the scale search, candidates re-quantized
  // per chunk, and the clip search in 16-row batches of one token each; 1G: one chunk of every
  // window and one batch of every token, as before chunking existed.
  const std::string family = GENERATE(as<std::string>{}, "llama", "phi3");
  INFO(family);
  calq::test::TempDir dir("calq_awq");
  calq::test::write_tiny_model(dir / "model", tiny_spec(family, /*kv_heads=*/4));
  const std::string scheme = "{bits: 3, group_size: 16, sym: false, grid: awq}";
  const auto whole = write_recipe(dir, "whole.yaml", scheme, "  - awq: {max_chunk_memory: 1G}\n");
  const auto tiny = write_recipe(dir, "tiny.yaml", scheme, "  - awq: {max_chunk_memory: 1}\n");
  calq::calib::CalibrationSet calibration;
  calibration.windows = random_windows(6, 12, 32, kSeed);
  const auto run = [&](const calq::core::Recipe& recipe) {
    return quantize_tiny(dir / "model", recipe, calibration);
  };
  const auto [whole_result, whole_weights] = run(whole);
  const auto [tiny_result, tiny_weights] = run(tiny);
  REQUIRE(whole_weights.size() == tiny_weights.size());
  for (size_t i = 0; i < whole_weights.size(); ++i)
    CHECK(at::equal(whole_weights[i], tiny_weights[i]));
  for (size_t l = 0; l < whole_result.layers.size(); ++l) {
    for (const auto& [name, state] : whole_result.layers[l]) {
      INFO("layer " << l << " " << name);
      const auto& a = state.reports.at("awq").figures;
      const auto& b = tiny_result.layers[l].at(name).reports.at("awq").figures;
      REQUIRE(state.quantized.has_value());
      CHECK(at::equal(state.quantized->codes, tiny_result.layers[l].at(name).quantized->codes));
      if (a.count("ratio") != 0) {
        CHECK(a.at("ratio") == b.at("ratio"));
        CHECK(a.at("search_chunks") == 1.0);
        CHECK(b.at("search_chunks") == 6.0);  // a window per chunk
        CHECK(b.at("loss") == Approx(a.at("loss")).epsilon(1e-6));
      }
      if (a.count("clip_shrink_mean") != 0) {
        CHECK(a.at("clip_shrink_mean") == b.at("clip_shrink_mean"));
        CHECK(a.at("clip_token_chunk") == a.at("clip_tokens"));
        CHECK(b.at("clip_token_chunk") == 1.0);
        CHECK(b.at("clip_row_batch") == 16.0);
      }
    }
  }
}

TEST_CASE("awq clip search in token chunks and small row batches matches one batch",
          "[awq][algorithms]") {
  at::manual_seed(kSeed);
  const at::Tensor w = at::randn({300, 40}) * at::rand({1, 40}) * 2;
  const at::Tensor x = at::randn({700, 40}) * (at::rand({1, 40}) + 0.1);
  calq::core::QuantSpec spec = calq::core::weight_spec(3, calq::core::Grid::AwqAsym, 16);
  calq::algorithms::ClipOptions options;
  const auto whole = calq::algorithms::awq_clip_search(w, x, spec, options);
  CHECK(whole.row_batch == 64);
  CHECK(whole.token_chunk == 700);
  // Room for 16 rows of every token: fewer rows per batch, one token chunk (bit for bit).
  options.max_chunk_memory = 4 * 700 * (40 + 3 * 3 * 20);
  const auto rows = calq::algorithms::awq_clip_search(w, x, spec, options);
  CHECK(rows.row_batch == 20);
  CHECK(rows.token_chunk == 700);
  CHECK(at::equal(rows.shrink, whole.shrink));
  CHECK(at::equal(rows.max_val, whole.max_val));
  // Room for 16 rows of 50 tokens: 14 token chunks accumulated in double.
  options.max_chunk_memory = 4 * 50 * (40 + 3 * 3 * 16);
  const auto chunks = calq::algorithms::awq_clip_search(w, x, spec, options);
  CHECK(chunks.row_batch == 16);
  CHECK(chunks.token_chunk == 50);
  CHECK(at::equal(chunks.shrink, whole.shrink));
  CHECK(at::equal(chunks.max_val, whole.max_val));
}
