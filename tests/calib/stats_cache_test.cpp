// The calibration cache: entries round-trip bit for bit, the folder stays under its bound, damaged
// entries are recollected, and a quantization that reads statistics from the cache gives exactly
// the weights of one that collects them — reusing only what the math allows (the float model's
// statistics; everything for a rerun of the same recipe).
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <catch2/catch.hpp>

#include "algorithms/pipeline.h"
#include "calib/calibration_set.h"
#include "calib/stats_cache.h"
#include "core/error.h"
#include "core/model/model.h"
#include "core/recipe.h"
#include "tests/support/temp_dir.h"
#include "tests/support/tiny_model.h"

namespace {

namespace fs = std::filesystem;
using calq::calib::LinearStats;
using calq::calib::StatsCache;

std::map<std::string, LinearStats> some_stats(int64_t in) {
  LinearStats s;
  s.hessian = at::randn({in, in});
  s.absmax = at::rand({in});
  s.inputs = at::randn({10, in}).to(at::kHalf);
  s.n_samples = 3;
  s.n_tokens = 10;
  return {{"attn.q", s}, {"mlp.up", s}};
}

int64_t folder_bytes(const fs::path& dir) {
  int64_t total = 0;
  for (const auto& e : fs::directory_iterator(dir)) total += static_cast<int64_t>(e.file_size());
  return total;
}

calq::core::Recipe recipe_in(const calq::test::TempDir& dir, const std::string& name,
                             const std::string& scheme, const std::string& passes) {
  std::ofstream(dir / name) << "model: {path: model}\n"
                               "scheme:\n  weights: " << scheme << "\npasses:\n" << passes;
  return calq::core::load_recipe((dir / name).string());
}

struct CachedRun {
  std::map<std::string, at::Tensor> weights;  // "layer.linear" -> weight after quantization
  calq::calib::CacheCounters counters;
};

CachedRun quantize(const calq::test::TempDir& dir, const calq::core::Recipe& recipe,
                   const at::Tensor& windows, StatsCache* cache) {
  auto model = calq::test::load_tiny_model(dir / "model");
  auto passes = calq::algorithms::build_passes(recipe);
  calq::calib::CalibrationSet calibration;
  calibration.windows = windows;
  calq::calib::CacheUse use{cache, "tiny"};
  calq::algorithms::quantize_model(*model, recipe, passes, &calibration, 2, use);
  CachedRun out;
  for (int64_t i = 0; i < model->n_layers(); ++i) {
    for (const std::string& name : model->layer(i).linear_names())
      out.weights[std::to_string(i) + "." + name] = model->layer(i).linear(name).weight.clone();
  }
  if (cache != nullptr) out.counters = cache->counters();
  return out;
}

bool same_weights(const CachedRun& a, const CachedRun& b) {
  for (const auto& [name, w] : a.weights) {
    if (!at::equal(w, b.weights.at(name))) return false;
  }
  return a.weights.size() == b.weights.size();
}

}  // namespace

TEST_CASE("cache entries round-trip bit for bit and count hits", "[calib][cache]") {
  calq::test::TempDir dir("calq_cache");
  at::manual_seed(1);
  const auto stats = some_stats(8);
  StatsCache cache((dir / "c").string(), int64_t{1} << 20);
  CHECK_FALSE(cache.load("k1", "layer 0 step 0", "cpu"));
  cache.store("k1", stats);
  const auto got = cache.load("k1", "layer 0 step 0", "cpu");
  REQUIRE(got);
  for (const auto& [name, s] : stats) {
    const LinearStats& g = got->at(name);
    CHECK(at::equal(g.hessian, s.hessian));
    CHECK(at::equal(g.absmax, s.absmax));
    CHECK(g.inputs.scalar_type() == at::kHalf);
    CHECK(at::equal(g.inputs, s.inputs));
    CHECK_FALSE(g.mean_abs.defined());
    CHECK(g.n_samples == 3);
    CHECK(g.n_tokens == 10);
  }
  CHECK(cache.counters().hits == 1);
  CHECK(cache.counters().misses == 1);
  CHECK(cache.counters().stores == 1);
  CHECK(cache.counters().reused == std::vector<std::string>{"layer 0 step 0"});
}

TEST_CASE("the cache folder stays under its bound, least recently used first", "[calib][cache]") {
  calq::test::TempDir dir("calq_cache");
  at::manual_seed(2);
  const auto stats = some_stats(16);
  // Measure one entry, then bound the folder to two and a half entries.
  int64_t entry = 0;
  {
    StatsCache probe((dir / "probe").string(), int64_t{1} << 30);
    probe.store("x", stats);
    entry = folder_bytes(dir / "probe");
  }
  StatsCache cache((dir / "c").string(), entry * 5 / 2);
  cache.store("a", stats);
  cache.store("b", stats);
  REQUIRE(cache.load("a", "a", "cpu"));  // "a" is now more recent than "b"
  cache.store("c", stats);
  CHECK(folder_bytes(dir / "c") <= entry * 5 / 2);
  CHECK(cache.counters().evicted == 1);
  CHECK(fs::exists(dir / "c" / "a.safetensors"));
  CHECK_FALSE(fs::exists(dir / "c" / "b.safetensors"));
  CHECK(fs::exists(dir / "c" / "c.safetensors"));

  StatsCache tiny((dir / "t").string(), entry / 2);
  tiny.store("big", stats);
  CHECK(tiny.counters().skipped_too_large == 1);
  CHECK_FALSE(fs::exists(dir / "t" / "big.safetensors"));
}

TEST_CASE("a damaged cache entry is removed and counts as a miss", "[calib][cache]") {
  calq::test::TempDir dir("calq_cache");
  fs::create_directories(dir / "c");
  std::ofstream(dir / "c" / "k.safetensors") << "not a safetensors file";
  StatsCache cache((dir / "c").string(), int64_t{1} << 20);
  CHECK_FALSE(cache.load("k", "k", "cpu"));
  CHECK(cache.counters().misses == 1);
  CHECK_FALSE(fs::exists(dir / "c" / "k.safetensors"));
}

TEST_CASE("cache sizes parse with units; nonsense names the option", "[calib][cache]") {
  using calq::calib::parse_byte_size;
  CHECK(parse_byte_size("4096", "--cache-limit") == 4096);
  CHECK(parse_byte_size("512M", "--cache-limit") == int64_t{512} << 20);
  CHECK(parse_byte_size("2G", "--cache-limit") == int64_t{2} << 30);
  CHECK(parse_byte_size("1.5K", "--cache-limit") == 1536);
  CHECK_THROWS_WITH(parse_byte_size("lots", "--cache-limit"),
                    Catch::Matchers::Contains("--cache-limit") &&
                        Catch::Matchers::Contains("\"lots\""));
  CHECK_THROWS_AS(parse_byte_size("-3G", "--cache-limit"), calq::Error);
  CHECK_THROWS_AS(parse_byte_size("3T", "--cache-limit"), calq::Error);
}

TEST_CASE("GPTQ from cached statistics equals GPTQ from fresh ones; reuse follows the math",
          "[calib][cache][algorithms]") {
  calq::test::TempDir dir("calq_cache_gptq");
  const auto spec = calq::test::small_model(11, 3);
  calq::test::write_tiny_model(dir / "model", spec);
  const at::Tensor windows = calq::test::seeded_windows(spec, 3);
  const auto w4 = recipe_in(dir, "w4.yaml", "{bits: 4, group_size: 16}", "  - gptq: {}\n");
  const auto w3 = recipe_in(dir, "w3.yaml", "{bits: 3, group_size: 16}", "  - gptq: {}\n");
  const std::string cache_dir = (dir / "cache").string();
  const int64_t steps = 3 * 4;  // layers x true-sequential subsets

  const CachedRun fresh = quantize(dir, w4, windows, nullptr);
  StatsCache first(cache_dir, int64_t{1} << 30);
  const CachedRun stored = quantize(dir, w4, windows, &first);
  CHECK(stored.counters.hits == 0);
  CHECK(stored.counters.stores == steps);
  CHECK(same_weights(stored, fresh));

  // The same recipe again: every step's statistics are reused, and the weights are identical.
  StatsCache again(cache_dir, int64_t{1} << 30);
  const CachedRun reread = quantize(dir, w4, windows, &again);
  CHECK(reread.counters.hits == steps);
  CHECK(reread.counters.misses == 0);
  CHECK(same_weights(reread, fresh));

  // Other bits: only layer 0's first subset saw the float model; later subsets and layers see
  // this recipe's quantized weights (GPTQ's sequential protocol), so they are collected afresh.
  StatsCache other(cache_dir, int64_t{1} << 30);
  const CachedRun w3_cached = quantize(dir, w3, windows, &other);
  CHECK(other.counters().reused == std::vector<std::string>{"layer 0 step 0"});
  CHECK(same_weights(w3_cached, quantize(dir, w3, windows, nullptr)));

  // Other calibration windows: nothing is reused.
  StatsCache moved(cache_dir, int64_t{1} << 30);
  quantize(dir, w4, windows.roll(1, 1), &moved);
  CHECK(moved.counters().hits == 0);
}

TEST_CASE("float-propagating recipes share every layer's float statistics",
          "[calib][cache][algorithms]") {
  calq::test::TempDir dir("calq_cache_sq");
  const auto spec = calq::test::small_model(12, 3);
  calq::test::write_tiny_model(dir / "model", spec);
  const at::Tensor windows = calq::test::seeded_windows(spec, 4);
  const auto a5 = recipe_in(dir, "a5.yaml", "{bits: 8, group_size: -1}",
                            "  - smoothquant: {alpha: 0.5}\n");
  const auto a8 = recipe_in(dir, "a8.yaml", "{bits: 8, group_size: -1}",
                            "  - smoothquant: {alpha: 0.8}\n");
  const std::string cache_dir = (dir / "cache").string();
  StatsCache first(cache_dir, int64_t{1} << 30);
  quantize(dir, a5, windows, &first);
  StatsCache second(cache_dir, int64_t{1} << 30);
  const CachedRun cached = quantize(dir, a8, windows, &second);
  // Each layer's first subset (q,k,v) reads the float model on float inputs.
  CHECK(second.counters().reused ==
        std::vector<std::string>{"layer 0 step 0", "layer 1 step 0", "layer 2 step 0"});
  CHECK(same_weights(cached, quantize(dir, a8, windows, nullptr)));
}
