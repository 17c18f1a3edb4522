// Families described as data (issue #19): every family's schema is self-consistent and agrees
// with the layer it loads, and a scale folds into each norm form without changing the function.
#include "core/model/layer_schema.h"

#include <set>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <catch2/catch.hpp>

#include "core/error.h"
#include "core/model/model.h"
#include "core/model/norm_scaling.h"
#include "tests/support/temp_dir.h"
#include "tests/support/tiny_model.h"

namespace {

using calq::core::LayerSchema;
using calq::core::Norm;
using calq::core::NormForm;

std::unique_ptr<calq::core::Model> tiny(const calq::test::TempDir& dir, const std::string& type) {
  calq::test::TinyModelSpec spec;
  spec.model_type = type;
  spec.kv_heads = 2;
  calq::test::write_tiny_model(dir / type, spec);
  calq::core::LoadOptions options;
  options.path = (dir / type).string();
  options.load_tokenizer = false;
  return calq::core::load_model(options);
}

// y = gain ⊙ x̂ (+ β) for one norm, as the family's forward applies it.
at::Tensor norm_output(const Norm& norm, const at::Tensor& xhat) {
  const at::Tensor gain = norm.form == NormForm::RmsOnePlus ? norm.weight + 1.0 : norm.weight;
  at::Tensor y = xhat * gain;
  if (norm.bias.defined()) y = y + norm.bias;
  return y;
}

}  // namespace

TEST_CASE("every family's schema names what its layers hold, consistently", "[core][model]") {
  calq::test::TempDir dir("calq_schema_test");
  for (const std::string type : {"llama", "qwen2", "qwen3", "mistral", "phi3", "opt", "gpt2",
                                 "mixtral", "qwen2_moe", "qwen3_moe"}) {
    INFO(type);
    auto model = tiny(dir, type);
    for (int64_t i = 0; i < model->n_layers(); ++i) {
      const LayerSchema& schema = model->layer_schema(i);
      auto& layer = model->layer(i);
      CHECK(schema.layer == i);
      CHECK(schema.linear_names() == layer.linear_names());
      CHECK(schema.norm_names() == layer.norm_names());
      for (const auto& l : schema.linears) {
        INFO(l.name);
        CHECK(layer.linear(l.name).weight.sizes().vec() == std::vector<int64_t>{l.out, l.in});
        // A fused linear's parts cover its rows; the loaded linear quantizes its output by them.
        int64_t part_rows = 0;
        for (int64_t rows : l.parts) part_rows += rows;
        if (!l.parts.empty()) CHECK(part_rows == l.out);
        CHECK(layer.linear(l.name).output_parts == l.parts);
        CHECK(layer.linear(l.name).bias.defined() == l.bias);
        if (!l.input_norm.empty()) CHECK_NOTHROW(schema.norm(l.input_norm));
      }
      for (const auto& n : schema.norms) {
        INFO(n.name);
        CHECK(layer.norm(n.name).weight.numel() == n.size);
        CHECK(layer.norm(n.name).bias.defined() == n.bias());
        CHECK(layer.norm(n.name).form == n.form);
      }
      // Steps cover every linear once, in increasing order; a step's linears share one input.
      std::vector<std::string> stepped;
      for (const auto& step : schema.sequential_steps()) {
        REQUIRE_FALSE(step.empty());
        for (const auto& name : step) {
          stepped.push_back(name);
          CHECK(schema.linear(name).input_norm == schema.linear(step.front()).input_norm);
        }
      }
      const std::vector<std::string> names = schema.linear_names();
      CHECK(std::multiset<std::string>(stepped.begin(), stepped.end()) ==
            std::multiset<std::string>(names.begin(), names.end()));
      // A pair's linears read prev_op's output: a norm's readers are exactly those naming it.
      for (const auto& pair : schema.scaling) {
        INFO(pair.prev_op);
        for (const auto& name : pair.linears) {
          const auto& spec = schema.linear(name);
          if (pair.prev_is_norm()) CHECK(spec.input_norm == pair.prev_op);
          else CHECK(schema.find_linear(pair.prev_op) != nullptr);
        }
        // A linear prev_op's slice lies inside its rows; a norm has no rows to slice.
        if (pair.prev_is_norm()) {
          CHECK(pair.prev_rows == 0);
        } else if (pair.prev_rows > 0) {
          CHECK(pair.prev_rows_begin >= 0);
          CHECK(pair.prev_rows_begin + pair.prev_rows <= schema.linear(pair.prev_op).out);
        }
        if (!pair.inspected_linear.empty()) CHECK(schema.find_linear(pair.inspected_linear));
      }
      for (const auto& pair : schema.norm_fed_pairs()) {
        std::vector<std::string> readers;
        for (const auto& l : schema.linears)
          if (l.input_norm == pair.prev_op) readers.push_back(l.name);
        CHECK(readers == pair.linears);
      }
    }
    REQUIRE_THROWS_AS(model->layer_schema(0).linear("mlp.nope"), calq::Error);
    REQUIRE_THROWS_AS(model->layer_schema(model->n_layers()), calq::Error);
  }
}

TEST_CASE("GPT-2's fc1 -> fc2 pair is declared and refused with its reason", "[core][model]") {
  calq::test::TempDir dir("calq_schema_test");
  auto model = tiny(dir, "gpt2");
  const LayerSchema& schema = model->layer_schema(0);
  bool found = false;
  for (const auto& pair : schema.scaling) {
    if (pair.prev_op != "mlp.fc1") continue;
    found = true;
    CHECK_THAT(pair.refused, Catch::Matchers::Contains("GELU"));
  }
  CHECK(found);
  CHECK(schema.linear("attn.q").checkpoint.empty());  // stored fused in c_attn
}

TEST_CASE("Phi-3's fused linears are quantization targets as stored, pairs name their rows",
          "[core][model]") {
  calq::test::TempDir dir("calq_schema_test");
  auto model = tiny(dir, "phi3");  // hidden 16, 4 heads of 4, 2 kv heads, intermediate 24
  const LayerSchema& schema = model->layer_schema(1);
  using calq::core::LinearRole;
  CHECK(schema.linear_names() ==
        std::vector<std::string>{"attn.qkv", "attn.o", "mlp.gate_up", "mlp.down"});
  const auto& qkv = schema.linear("attn.qkv");
  CHECK(qkv.checkpoint == "model.layers.1.self_attn.qkv_proj");
  CHECK(qkv.role == LinearRole::QueryKeyValue);
  CHECK(qkv.parts == std::vector<int64_t>{16, 8, 8});
  const auto& gate_up = schema.linear("mlp.gate_up");
  CHECK(gate_up.checkpoint == "model.layers.1.mlp.gate_up_proj");
  CHECK(gate_up.role == LinearRole::GateUp);
  CHECK(gate_up.parts == std::vector<int64_t>{24, 24});
  CHECK(schema.sequential_steps() ==
        std::vector<std::vector<std::string>>{{"attn.qkv"}, {"attn.o"}, {"mlp.gate_up"},
                                              {"mlp.down"}});
  CHECK(calq::core::is_attention_input(LinearRole::QueryKeyValue));
  CHECK(calq::core::feeds_attention_scores(LinearRole::QueryKeyValue));
  CHECK_FALSE(calq::core::is_attention_input(LinearRole::GateUp));
  CHECK_FALSE(calq::core::feeds_attention_scores(LinearRole::GateUp));
  REQUIRE(schema.scaling.size() == 4);
  CHECK(schema.scaling[1].prev_op == "attn.qkv");  // v: the last 8 of 32 rows
  CHECK(schema.scaling[1].prev_rows_begin == 24);
  CHECK(schema.scaling[1].prev_rows == 8);
  CHECK(schema.scaling[3].prev_op == "mlp.gate_up");  // up: the second half
  CHECK(schema.scaling[3].prev_rows_begin == 24);
  CHECK(schema.scaling[3].prev_rows == 24);
  REQUIRE(schema.norm_fed_pairs().size() == 2);
  CHECK(schema.norm_fed_pairs()[0].linears == std::vector<std::string>{"attn.qkv"});
  CHECK(schema.norm_fed_pairs()[1].linears == std::vector<std::string>{"mlp.gate_up"});
}

TEST_CASE("a scale folds into every norm form without changing the block's input",
          "[core][model]") {
  at::manual_seed(3);
  const int64_t H = 16;
  const at::Tensor xhat = at::randn({5, H});
  const at::Tensor s = at::rand({H}) * 4 + 0.25;
  for (const NormForm form : {NormForm::Rms, NormForm::RmsOnePlus, NormForm::Layer}) {
    INFO(calq::core::norm_form_name(form));
    Norm norm;
    norm.form = form;
    norm.weight = at::randn({H}) * 0.5;
    if (form == NormForm::Layer) norm.bias = at::randn({H});
    const at::Tensor before = norm_output(norm, xhat);
    Norm folded = norm;
    folded.weight = norm.weight.clone();
    if (norm.bias.defined()) folded.bias = norm.bias.clone();
    calq::core::divide_norm_output(folded, s);
    CHECK(at::allclose(norm_output(folded, xhat), before / s, 1e-5, 1e-6));
    calq::core::multiply_norm_output(folded, s);
    CHECK(at::allclose(norm_output(folded, xhat), before, 1e-5, 1e-6));
  }
  // Dividing Gemma's stored γ instead of 1 + γ (llm-compressor#2102) is measurably wrong.
  Norm gemma;
  gemma.form = NormForm::RmsOnePlus;
  gemma.weight = at::randn({H}) * 0.5;
  const at::Tensor wrong = xhat * (gemma.weight / s + 1.0);
  CHECK_FALSE(at::allclose(wrong, norm_output(gemma, xhat) / s, 1e-3, 1e-4));
}

TEST_CASE("Rms and LayerNorm folding is the plain in-place division (bit for bit)",
          "[core][model]") {
  at::manual_seed(4);
  Norm norm;
  norm.form = NormForm::Layer;
  norm.weight = at::randn({8});
  norm.bias = at::randn({8});
  const at::Tensor s = at::rand({8}) + 0.5;
  const at::Tensor w = norm.weight / s, b = norm.bias / s;
  calq::core::divide_norm_output(norm, s);
  CHECK(at::equal(norm.weight, w));
  CHECK(at::equal(norm.bias, b));
}
