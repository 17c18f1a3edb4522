// Export end to end on small models built here: quantize with a recipe, export in each format,
// load the exported directory the way `calq eval` does, and require the very same logits (packed
// codes dequantize to the in-memory weights bit for bit; W8A8 checkpoints bring their activation
// quantization back). Also: config.json contents, llama2.c → HF Llama, refusals before writing.
#include <filesystem>
#include <fstream>
#include <string>

#include <ATen/ATen.h>
#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "algorithms/pipeline.h"
#include "calib/calibration_set.h"
#include "core/checkpoint/export_checkpoint.h"
#include "core/error.h"
#include "core/model/model.h"
#include "core/recipe.h"
#include "tests/support/llama2c_reference.h"
#include "tests/support/temp_dir.h"
#include "tests/support/tiny_model.h"

namespace {

namespace fs = std::filesystem;

calq::test::TinyModelSpec exportable(const std::string& family) {
  calq::test::TinyModelSpec spec;
  spec.model_type = family;
  spec.hidden = 64;  // in_features multiples of 32, as packed formats need
  spec.intermediate = 128;
  spec.heads = 4;
  spec.kv_heads = family == "opt" ? 4 : 2;
  spec.vocab = 48;
  spec.seed = 11;
  return spec;
}

struct Exported {
  at::Tensor logits_in_memory;
  at::Tensor logits_reloaded;
  nlohmann::json config;
  calq::core::ExportResult result;
};

/// Quantizes `model_path` with `scheme` (+ passes) and exports it to dir/out.
Exported quantize_and_export(const calq::test::TempDir& dir, const std::string& model_path,
                             const std::string& scheme, const std::string& save,
                             const std::string& passes = "passes: [rtn]\n",
                             int64_t max_shard_bytes = int64_t{4} << 30) {
  std::ofstream(dir / "recipe.yaml") << "model: {path: " << model_path << "}\nscheme:\n"
                                     << scheme << passes << "save: " << save << "\n";
  const calq::core::Recipe recipe = calq::core::load_recipe((dir / "recipe.yaml").string());
  auto model = calq::test::load_tiny_model(recipe.model.path.resolved);
  auto passes_built = calq::algorithms::build_passes(recipe);
  calq::calib::CalibrationSet calibration;
  at::manual_seed(5);
  calibration.windows = at::randint(0, model->config().vocab_size, {4, 16}, at::kLong);
  const auto result = calq::algorithms::quantize_model(*model, recipe, passes_built, &calibration, 2);
  calq::core::check_save_scheme(*recipe.save, recipe.scheme, recipe.file);

  const calq::core::QuantizedLinears q = calq::algorithms::quantized_linears(result);
  calq::core::ExportOptions options;
  options.format = recipe.save->format;
  options.path = recipe.save->path.resolved;
  options.max_shard_bytes = max_shard_bytes;
  if (recipe.scheme.activations) options.activations = recipe.scheme.activations->spec();
  Exported out;
  out.result = calq::core::export_checkpoint(*model, q, options);
  at::manual_seed(6);
  const at::Tensor ids = at::randint(0, model->config().vocab_size, {2, 12}, at::kLong);
  out.logits_in_memory = model->forward(ids);
  auto reloaded = calq::test::load_tiny_model(options.path);
  out.logits_reloaded = reloaded->forward(ids);
  std::ifstream(fs::path(options.path) / "config.json") >> out.config;
  return out;
}

}  // namespace

TEST_CASE("exported checkpoints reload to the very same model", "[checkpoint][export]") {
  struct Case {
    std::string family, scheme, save, method;
  };
  const Case cases[] = {
      {"llama", "  weights: {bits: 4, group_size: 32, sym: true, grid: gptq}\n", "{format: gptq, path: out}", "gptq"},
      {"llama", "  weights: {bits: 3, group_size: 32, sym: false, grid: gptq}\n", "{format: gptq, path: out}", "gptq"},
      {"opt", "  weights: {bits: 8, group_size: -1, sym: true, grid: gptq}\n", "{format: gptq, path: out}", "gptq"},
      {"llama", "  weights: {bits: 4, group_size: 32, sym: false, grid: awq}\n", "{format: awq, path: out}", "awq"},
      {"opt", "  weights: {bits: 4, group_size: 32, sym: false, grid: gptq}\n",
       "{format: compressed-tensors, path: out}", "compressed-tensors"},
      {"llama", "  weights: {bits: 8, group_size: -1, sym: true, grid: absmax}\n"
                "  activations: {bits: 8, granularity: token, dynamic: true, sym: true}\n",
       "{format: compressed-tensors, path: out}", "compressed-tensors"},
      {"llama", "  weights: {bits: 4, group_size: 32, sym: false, grid: gptq}\n", "{format: fake, path: out}", ""},
  };
  for (const Case& c : cases) {
    INFO(c.family << " " << c.scheme << c.save);
    calq::test::TempDir dir("calq_export");
    calq::test::write_tiny_model(dir / "model", exportable(c.family));
    const Exported e = quantize_and_export(dir, "model", c.scheme, c.save);
    CHECK(at::equal(e.logits_reloaded, e.logits_in_memory));
    CHECK(e.result.reread_tensors > 0);
    if (c.method.empty()) {
      CHECK_FALSE(e.config.contains("quantization_config"));
    } else {
      CHECK(e.config.at("quantization_config").at("quant_method") == c.method);
      CHECK(e.result.quantized_linears == (c.family == "opt" ? 12 : 14));
    }
    if (c.scheme.find("activations") != std::string::npos) {
      const auto& group = e.config["quantization_config"]["config_groups"]["group_0"];
      CHECK(group["input_activations"]["strategy"] == "token");
      CHECK(e.config["quantization_config"]["format"] == "int-quantized");
    }
    CHECK_FALSE(fs::exists(dir / (".out.calq-tmp-" + std::to_string(::getpid()))));
  }
}

TEST_CASE("large checkpoints are sharded with an index and reload the same", "[checkpoint][export]") {
  calq::test::TempDir dir("calq_export");
  calq::test::write_tiny_model(dir / "model", exportable("llama"));
  const Exported e = quantize_and_export(
      dir, "model", "  weights: {bits: 4, group_size: 32, sym: true, grid: gptq}\n",
      "{format: gptq, path: out}", "passes: [rtn]\n", /*max_shard_bytes=*/16 << 10);
  CHECK(e.result.files > 2);
  CHECK(fs::exists(dir / "out" / fmt::format("model-00001-of-{:05d}.safetensors", e.result.files)));
  nlohmann::json index;
  std::ifstream(dir / "out" / "model.safetensors.index.json") >> index;
  CHECK(index["weight_map"].contains("model.layers.1.mlp.down_proj.qweight"));
  CHECK(index["metadata"]["total_size"] == e.result.bytes);
  CHECK(at::equal(e.logits_reloaded, e.logits_in_memory));
}

TEST_CASE("gptq act-order exports desc_act with its g_idx and reloads exactly", "[checkpoint][export]") {
  calq::test::TempDir dir("calq_export");
  calq::test::write_tiny_model(dir / "model", exportable("llama"));
  const Exported e = quantize_and_export(
      dir, "model", "  weights: {bits: 4, group_size: 32, sym: true, grid: gptq}\n",
      "{format: gptq, path: out}", "passes:\n  - gptq: {act_order: true}\n");
  CHECK(at::equal(e.logits_reloaded, e.logits_in_memory));
  CHECK(e.config["quantization_config"]["desc_act"] == true);
  bool warned = false;
  for (const auto& w : e.result.warnings) warned = warned || w.find("desc_act") != std::string::npos;
  CHECK(warned);
}

TEST_CASE("a llama2.c model exports as an HF Llama that reloads to the same logits",
          "[checkpoint][export]") {
  calq::test::TempDir dir("calq_export");
  // dim 64, hidden 128, 2 layers, 4 heads, 2 kv heads, vocab 40, seq 32
  calq::test::write_llama2c_bin(dir / "m.bin", {64, 128, 2, 4, 2, 40, 32}, 3);
  const Exported e = quantize_and_export(
      dir, "m.bin", "  weights: {bits: 4, group_size: 32, sym: true, grid: gptq}\n",
      "{format: gptq, path: out}");
  CHECK(at::equal(e.logits_reloaded, e.logits_in_memory));
  CHECK(e.config["model_type"] == "llama");
  CHECK(e.config["num_key_value_heads"] == 2);
}

TEST_CASE("exports that cannot be represented fail before anything is written", "[checkpoint][export]") {
  calq::test::TempDir dir("calq_export");
  calq::test::write_tiny_model(dir / "model", exportable("llama"));
  // Symmetric AWQ: refused from the recipe alone.
  CHECK_THROWS_WITH(
      quantize_and_export(dir, "model", "  weights: {bits: 4, group_size: 32, sym: true, grid: gptq}\n",
                          "{format: awq, path: out}"),
      Catch::Contains("save.format awq") && Catch::Contains("asymmetric"));
  // Activations in a GPTQ checkpoint: refused.
  CHECK_THROWS_WITH(
      quantize_and_export(dir, "model",
                          "  weights: {bits: 4, group_size: 32, sym: true, grid: gptq}\n"
                          "  activations: {bits: 8}\n",
                          "{format: gptq, path: out}"),
      Catch::Contains("cannot store scheme.activations"));
  // A group size that does not divide in_features (128 / 48): refused by the layout check.
  CHECK_THROWS_WITH(
      quantize_and_export(dir, "model", "  weights: {bits: 4, group_size: 48, sym: true, grid: gptq}\n",
                          "{format: gptq, path: out}"),
      Catch::Contains("does not divide"));
  CHECK_FALSE(fs::exists(dir / "out"));
  for (const auto& entry : fs::directory_iterator(dir.path()))
    CHECK(entry.path().filename().string().find("calq-tmp") == std::string::npos);
}
