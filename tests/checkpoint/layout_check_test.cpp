// Checkpoints whose quantization_config lies about their tensors (issue 18, class 5): a tiny
// model is exported in each packed format, then config.json is edited (symmetric flipped, group
// size, strategy, bits changed) or a tensor dropped or renamed, and loading must fail with one
// line naming the config field and the tensor. The untouched exports load and give the
// in-memory model's logits.
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>

#include <ATen/ATen.h>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "algorithms/pipeline.h"
#include "core/checkpoint/checkpoint_weights.h"
#include "core/checkpoint/export_checkpoint.h"
#include "core/checkpoint/layout_check.h"
#include "core/error.h"
#include "core/io/safetensors.h"
#include "core/model/model.h"
#include "core/model/weight_source.h"
#include "core/recipe.h"
#include "tests/support/temp_dir.h"
#include "tests/support/tiny_model.h"

namespace {

namespace fs = std::filesystem;
using Catch::Contains;
using Json = nlohmann::json;

const char* const kLinear = "model.layers.1.mlp.down_proj";

/// A tiny Llama (in_features 64 and 128) quantized with RTN under `scheme` and exported to
/// dir/out; returns the in-memory model's logits on fixed ids.
at::Tensor export_tiny(const calq::test::TempDir& dir, const std::string& scheme,
                       const std::string& format) {
  calq::test::TinyModelSpec spec;
  spec.hidden = 64;
  spec.intermediate = 128;
  spec.vocab = 48;
  spec.seed = 11;
  calq::test::write_tiny_model(dir / "model", spec);
  std::ofstream(dir / "recipe.yaml") << "model: {path: model}\nscheme:\n" << scheme
                                     << "passes: [rtn]\nsave: {format: " << format
                                     << ", path: out}\n";
  const calq::core::Recipe recipe = calq::core::load_recipe((dir / "recipe.yaml").string());
  auto model = calq::test::load_tiny_model(recipe.model.path.resolved);
  auto passes = calq::algorithms::build_passes(recipe);
  const auto result = calq::algorithms::quantize_model(*model, recipe, passes, nullptr, 2);
  calq::core::ExportOptions options;
  options.format = recipe.save->format;
  options.path = recipe.save->path.resolved;
  if (recipe.scheme.activations) options.activations = recipe.scheme.activations->spec();
  calq::core::export_checkpoint(*model, calq::algorithms::quantized_linears(result), options);
  return model->forward(at::arange(12, at::kLong).view({1, 12}));
}

/// dir/out copied to dir/edited with `edit` applied to its quantization_config.
fs::path edited_config(const calq::test::TempDir& dir, const std::function<void(Json&)>& edit) {
  const fs::path out = dir / "edited";
  fs::remove_all(out);
  fs::copy(dir / "out", out, fs::copy_options::recursive);
  Json config;
  std::ifstream(out / "config.json") >> config;
  edit(config["quantization_config"]);
  std::ofstream(out / "config.json") << config.dump(2);
  return out;
}

/// dir/out copied to dir/edited with tensor `name` dropped (or renamed to `rename_to`).
fs::path edited_tensors(const calq::test::TempDir& dir, const std::string& name,
                        const std::string& rename_to = "") {
  const fs::path out = dir / "edited";
  fs::remove_all(out);
  fs::copy(dir / "out", out, fs::copy_options::recursive);
  const auto source = calq::core::open_safetensors_source((dir / "out").string());
  calq::core::NamedTensors tensors;
  bool found = false;
  for (const std::string& n : source->names()) {
    if (n != name) {
      tensors.emplace_back(n, source->load(n));
      continue;
    }
    found = true;
    if (!rename_to.empty()) tensors.emplace_back(rename_to, source->load(n));
  }
  REQUIRE(found);
  calq::core::write_safetensors((out / "model.safetensors").string(), tensors);
  return out;
}

std::string load_error(const fs::path& dir) {
  try {
    calq::test::load_tiny_model(dir);
  } catch (const calq::Error& e) {
    return e.what();
  }
  return "(loaded)";
}

/// The error names the config field, the tensor, and is one line.
void expect_refused(const fs::path& dir, const std::string& field, const std::string& tensor) {
  const std::string message = load_error(dir);
  INFO(message);
  CHECK_THAT(message, Contains("config.json") && Contains(field) && Contains(tensor));
  CHECK(message.find('\n') == std::string::npos);
}

void expect_untouched_loads(const calq::test::TempDir& dir, const at::Tensor& in_memory) {
  const auto source = calq::core::open_safetensors_source((dir / "out").string());
  const auto layout = calq::core::read_packed_layout((dir / "out").string());
  REQUIRE(layout.has_value());
  CHECK(calq::core::find_layout_mismatches(*layout, *source, "config.json", 100).empty());
  auto model = calq::test::load_tiny_model(dir / "out");
  CHECK(at::equal(model->forward(at::arange(12, at::kLong).view({1, 12})), in_memory));
}

}  // namespace

TEST_CASE("gptq checkpoints whose config disagrees with their tensors are refused at load",
          "[checkpoint][layout]") {
  calq::test::TempDir dir("calq_layout");
  const at::Tensor logits =
      export_tiny(dir, "  weights: {bits: 4, group_size: 32, sym: true, grid: gptq}\n", "gptq");
  expect_untouched_loads(dir, logits);
  const std::string p = kLinear;

  SECTION("group size") {
    expect_refused(edited_config(dir, [](Json& q) { q["group_size"] = 64; }),
                   "quantization_config.group_size is 64",
                   ".scales\" has 4 groups over in_features 128 (group_size 32)");
  }
  SECTION("bits") {
    expect_refused(edited_config(dir, [](Json& q) { q["bits"] = 8; }),
                   "quantization_config.bits is 8", "which holds 4-bit codes");
    expect_refused(edited_config(dir, [](Json& q) { q["bits"] = 2; }),
                   "quantization_config.bits is 2", ".qweight\"");
  }
  SECTION("checkpoint format: v2 zeros are not the symmetric 8 of a v1 checkpoint") {
    expect_refused(edited_config(dir, [](Json& q) { q["checkpoint_format"] = "gptq_v2"; }),
                   "quantization_config.checkpoint_format is gptq_v2",
                   "every symmetric zero 8 as 7, as checkpoint_format gptq does");
  }
  SECTION("quant_method awq over gptq tensors") {
    expect_refused(edited_config(dir, [](Json& q) {
                     q["quant_method"] = "awq";
                   }),
                   "awq", ".g_idx\" does not belong");
  }
  SECTION("a dropped or renamed tensor") {
    expect_refused(edited_tensors(dir, p + ".qzeros"), "qzeros", p + ".qzeros\" is missing");
    expect_refused(edited_tensors(dir, p + ".g_idx", p + ".g_index"), "gptq",
                   p + ".g_index\" does not belong");
    expect_refused(edited_tensors(dir, p + ".qweight"), "qweight",
                   "has no \"" + p + ".qweight\" beside it");
  }
  SECTION("a wrong type in a field is an error naming it, not an internal one") {
    expect_refused(edited_config(dir, [](Json& q) { q["sym"] = "yes"; }),
                   "quantization_config.sym", "wrong type");
  }
}

TEST_CASE("asymmetric gptq declared symmetric is refused", "[checkpoint][layout]") {
  calq::test::TempDir dir("calq_layout");
  const at::Tensor logits =
      export_tiny(dir, "  weights: {bits: 4, group_size: 32, sym: false, grid: gptq}\n", "gptq");
  expect_untouched_loads(dir, logits);
  expect_refused(edited_config(dir, [](Json& q) { q["sym"] = true; }),
                 "quantization_config.sym is true", "zero points other than the symmetric 8");
}

TEST_CASE("awq checkpoints whose config disagrees with their tensors are refused",
          "[checkpoint][layout]") {
  calq::test::TempDir dir("calq_layout");
  const at::Tensor logits =
      export_tiny(dir, "  weights: {bits: 4, group_size: 32, sym: false, grid: awq}\n", "awq");
  expect_untouched_loads(dir, logits);
  // zero_point: false reads only with every qzero the symmetric 8 (AutoRound's auto_awq).
  expect_refused(edited_config(dir, [](Json& q) { q["zero_point"] = false; }),
                 "quantization_config.zero_point is false",
                 "zero points other than the symmetric 8");
  expect_refused(edited_config(dir, [](Json& q) { q["group_size"] = 64; }),
                 "quantization_config.group_size is 64",
                   ".scales\" has 4 groups over in_features 128 (group_size 32)");
  expect_refused(edited_config(dir, [](Json& q) { q["group_size"] = -1; }),
                 "quantization_config.group_size is -1", ".qweight\"");
  expect_refused(edited_tensors(dir, std::string(kLinear) + ".scales"), "awq",
                 std::string(kLinear) + ".scales\" is missing");
}

TEST_CASE("compressed-tensors checkpoints whose config disagrees with their tensors are refused",
          "[checkpoint][layout]") {
  const std::string w = "quantization_config.config_groups.group_0.weights.";
  calq::test::TempDir dir("calq_layout");
  SECTION("pack-quantized, asymmetric groups") {
    const at::Tensor logits = export_tiny(
        dir, "  weights: {bits: 4, group_size: 32, sym: false, grid: gptq}\n",
        "compressed-tensors");
    expect_untouched_loads(dir, logits);
    const auto weights = [&](std::function<void(Json&)> edit) {
      return edited_config(dir, [&](Json& q) { edit(q["config_groups"]["group_0"]["weights"]); });
    };
    // The example: symmetric: true over zero points evaluated to perplexity 15194.
    expect_refused(weights([](Json& x) { x["symmetric"] = true; }), w + "symmetric is true",
                   ".weight_zero_point\" is present");
    expect_refused(weights([](Json& x) {
                     x["strategy"] = "channel";
                     x["group_size"] = nullptr;
                   }),
                   w + "strategy is \"channel\"", ".weight_scale\" has shape [64, 4]");
    expect_refused(weights([](Json& x) { x["strategy"] = "tensor"; }), w + "strategy is \"tensor\"",
                   ".weight_scale\"");
    expect_refused(weights([](Json& x) { x["group_size"] = 16; }), w + "group_size is 16",
                   "has 4 groups over in_features 128 (group_size 32)");
    expect_refused(weights([](Json& x) { x["num_bits"] = 8; }), w + "num_bits is 8",
                   ".weight_packed\" has shape [64, 16], which holds 4-bit codes");
    expect_refused(weights([](Json& x) { x["actorder"] = "group"; }), w + "actorder",
                   ".weight_g_idx\" is missing");
    expect_refused(edited_tensors(dir, std::string(kLinear) + ".weight_zero_point"),
                   w + "symmetric is false", ".weight_zero_point\" is missing");
    expect_refused(edited_tensors(dir, std::string(kLinear) + ".weight_shape"), "weight_shape",
                   std::string(kLinear) + ".weight_shape\" is missing");
  }
  SECTION("int-quantized W8A8, symmetric channels") {
    const at::Tensor logits = export_tiny(
        dir,
        "  weights: {bits: 8, group_size: -1, sym: true, grid: absmax}\n"
        "  activations: {bits: 8, granularity: token, dynamic: true, sym: true}\n",
        "compressed-tensors");
    expect_untouched_loads(dir, logits);
    const auto weights = [&](std::function<void(Json&)> edit) {
      return edited_config(dir, [&](Json& q) { edit(q["config_groups"]["group_0"]["weights"]); });
    };
    expect_refused(weights([](Json& x) { x["symmetric"] = false; }), w + "symmetric is false",
                   ".weight_zero_point\" is missing");
    expect_refused(weights([](Json& x) { x["strategy"] = "tensor"; }), w + "strategy is \"tensor\"",
                   ".weight_scale\" has shape [64, 1]");
    expect_refused(weights([](Json& x) { x["num_bits"] = 4; }), w + "num_bits is 4",
                   ".weight\" holds codes");
  }
}

TEST_CASE("AutoRound's own format reads as the GPTQ layout its packing_format names",
          "[checkpoint][layout]") {
  // auto-round 0.15 export/export_to_autoround: quant_method "auto-round", packing_format
  // "auto_round:auto_gptq" = GPTQ v1 packing without g_idx (qlinear_torch_zp.py).
  calq::test::TempDir dir("calq_layout");
  const at::Tensor logits =
      export_tiny(dir, "  weights: {bits: 4, group_size: 32, sym: true, grid: gptq}\n", "gptq");
  const fs::path out = dir / "auto_round";
  fs::copy(dir / "out", out, fs::copy_options::recursive);
  const auto source = calq::core::open_safetensors_source((dir / "out").string());
  calq::core::NamedTensors tensors;
  for (const std::string& n : source->names()) {
    if (n.size() < 6 || n.compare(n.size() - 6, 6, ".g_idx") != 0) tensors.emplace_back(n, source->load(n));
  }
  calq::core::write_safetensors((out / "model.safetensors").string(), tensors);
  const auto write_config = [&](const std::function<void(Json&)>& edit) {
    Json config;
    std::ifstream(dir / "out" / "config.json") >> config;
    config["quantization_config"] = {{"quant_method", "auto-round"}, {"bits", 4},
                                     {"group_size", 32}, {"sym", true}, {"data_type", "int"},
                                     {"packing_format", "auto_round:auto_gptq"}};
    edit(config["quantization_config"]);
    std::ofstream(out / "config.json") << config.dump(2);
  };
  write_config([](Json&) {});
  auto model = calq::test::load_tiny_model(out);
  CHECK(at::equal(model->forward(at::arange(12, at::kLong).view({1, 12})), logits));

  write_config([](Json& q) { q["packing_format"] = "auto_round:marlin"; });
  expect_refused(out, "quantization_config.packing_format", "auto_round:marlin");
  write_config([](Json& q) { q["act_bits"] = 8; });
  expect_refused(out, "quantization_config.act_bits", "weight-only");
  write_config([](Json& q) { q["packing_format"] = "auto_round:gptqmodel"; });  // expects g_idx
  expect_refused(out, "qweight, qzeros, scales, g_idx", ".g_idx\" is missing");
}
