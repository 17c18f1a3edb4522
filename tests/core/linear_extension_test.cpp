// Linear extensions (docs/architecture.md §4.1): Linear::forward applies them in the stage order
// it had when they were fixed fields (input fake quantization → GEMM with bias → low-rank term
// from the quantized input → output fake quantization; LLM.int8() alone on the raw input), and
// each kind saves itself and comes back through the registry with the same settings and bits.
#include <memory>
#include <string>

#include <ATen/ATen.h>
#include <catch2/catch.hpp>

#include "core/error.h"
#include "core/model/activation_quant_extensions.h"
#include "core/model/int8_matmul.h"
#include "core/model/linear_extension_registry.h"
#include "core/model/low_rank.h"
#include "core/model/model.h"

namespace {

using Catch::Matchers::Contains;
using calq::core::ActGranularity;
using calq::core::ActQuantSpec;
using calq::core::InputQuant;
using calq::core::Int8Matmul;
using calq::core::Linear;
using calq::core::LowRank;
using calq::core::OutputQuant;

Linear random_linear() {
  at::manual_seed(11);
  return Linear(at::randn({6, 8}), at::randn({6}));
}

std::shared_ptr<LowRank> random_low_rank() {
  auto f = std::make_shared<LowRank>();
  f->a = at::randn({2, 8});
  f->b = at::randn({6, 2});
  return f;
}

}  // namespace

TEST_CASE("linear extensions apply in forward's stage order, whatever the install order",
          "[core][model]") {
  Linear l = random_linear();
  const auto low_rank = random_low_rank();
  const ActQuantSpec spec(4, true, ActGranularity::PerToken);
  l.put(std::make_shared<OutputQuant>(spec));
  l.put(low_rank);
  l.put(std::make_shared<InputQuant>(spec));
  const at::Tensor x = at::randn({3, 5, 8});
  const at::Tensor x2d = x.reshape({-1, 8});
  const at::Tensor xq = calq::core::fake_quantize_activations(x2d, spec);
  at::Tensor want = at::empty({15, 6});
  at::addmm_out(want, l.bias, xq, l.weight.t());
  want.addmm_(at::mm(xq, low_rank->a.t()), low_rank->b.t());
  want = calq::core::fake_quantize_activations(want, spec).view({3, 5, 6});
  CHECK(at::equal(l.forward(x), want));

  // One per kind: a second InputQuant replaces the first (here with a static scale).
  l.put(std::make_shared<InputQuant>(ActQuantSpec(8, true, ActGranularity::PerTensor),
                                     at::full({1}, 0.05)));
  CHECK(l.extensions().size() == 3);
  CHECK(l.find<InputQuant>()->spec.bits == 8);
}

TEST_CASE("a matmul-stage extension (LLM.int8) computes the output alone from the raw input",
          "[core][model]") {
  Linear l = random_linear();
  calq::core::Int8Decomposition d;
  d.threshold = 1.5;
  d.float_weight = l.weight.clone();
  l.put(std::make_shared<Int8Matmul>(d));
  l.put(std::make_shared<InputQuant>(ActQuantSpec(4, true, ActGranularity::PerToken)));
  const at::Tensor x = at::randn({4, 8});
  CHECK(at::equal(l.forward(x), calq::core::int8_mixed_matmul(x, l.weight, l.bias, d)));
  CHECK(l.find<Int8Matmul>()->decomposition().calls == 1);
}

TEST_CASE("every linear extension kind saves itself and loads back through the registry",
          "[core][model]") {
  at::manual_seed(5);
  calq::core::Int8Decomposition d;
  d.threshold = 6.25;
  d.float_weight = at::randn({6, 8});
  auto low_rank = random_low_rank();
  low_rank->stored_dtype = at::kBFloat16;
  const std::shared_ptr<const calq::core::LinearExtension> kinds[] = {
      std::make_shared<InputQuant>(ActQuantSpec(8, true, ActGranularity::PerTensor),
                                   at::full({1}, 0.125)),
      std::make_shared<InputQuant>(
          ActQuantSpec(8, true, ActGranularity::PerToken, calq::core::FpFormat::E5M2)),
      std::make_shared<OutputQuant>(ActQuantSpec(4, false, ActGranularity::PerToken)),
      std::make_shared<Int8Matmul>(d), low_rank};
  for (const auto& e : kinds) {
    INFO(e->kind());
    const calq::core::ExtensionState saved = e->save();
    const auto loaded = calq::core::load_linear_extension(e->kind(), saved);
    REQUIRE(loaded->kind() == e->kind());
    CHECK(loaded->stage() == e->stage());
    const calq::core::ExtensionState again = loaded->save();
    CHECK(again.settings == saved.settings);
    REQUIRE(again.tensors.size() == saved.tensors.size());
    for (const auto& [key, t] : saved.tensors) CHECK(at::equal(again.tensors.at(key), t));
  }
  // Enums by name, not by number.
  CHECK_THAT(low_rank->save().settings, Contains("\"BF16\""));
  CHECK_THAT(kinds[0]->save().settings, Contains("\"per_tensor\""));
  CHECK_THROWS_WITH(calq::core::load_linear_extension("rotation", {"{}", {}}),
                    Contains("\"rotation\" is unknown; expected one of input_quant, output_quant, "
                             "llm_int8, low_rank"));
  CHECK_THROWS_WITH(calq::core::load_linear_extension("low_rank", {"{\"stored_dtype\": 5}", {}}),
                    Contains("linear extension low_rank"));
}
