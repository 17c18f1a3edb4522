// Mixture-of-experts layers (docs/moe.md): what the calibration observer sees of each expert,
// routed or all_experts, and that the mode changes statistics only, never the layer's output.
#include <map>
#include <string>

#include <ATen/ATen.h>
#include <catch2/catch.hpp>

#include "algorithms/targets.h"
#include "core/model/model.h"
#include "core/recipe.h"
#include "tests/support/temp_dir.h"
#include "tests/support/tiny_model.h"

namespace {

struct Seen {
  std::map<std::string, int64_t> tokens;  // linear -> rows observed
  at::Tensor output;
};

Seen run_layer(calq::core::Model& model, int64_t layer, const at::Tensor& x, bool all_experts) {
  Seen seen;
  calq::core::ForwardContext ctx = model.make_context(x.size(1));
  ctx.observer = [&seen](int64_t, std::string_view name, const at::Tensor& in) {
    seen.tokens[std::string(name)] += in.numel() / in.size(-1);
  };
  ctx.observe_all_experts = all_experts;
  seen.output = model.layer(layer).forward(x.clone(), ctx);
  return seen;
}

}  // namespace

TEST_CASE("an MoE layer's experts see their routed tokens, or every token with all_experts",
          "[core][model][moe]") {
  calq::test::TempDir dir("calq_moe_test");
  for (const std::string type : {"mixtral", "qwen2_moe", "qwen3_moe"}) {
    INFO(type);
    calq::test::TinyModelSpec spec;
    spec.model_type = type;
    spec.hidden = 32;
    spec.intermediate = 16;
    calq::test::write_tiny_model(dir / type, spec);
    auto model = calq::test::load_tiny_model(dir / type);
    const int64_t sparse = type == "qwen3_moe" ? 1 : 0;  // qwen3_moe: layer 0 is dense
    const calq::core::MoeSpec& moe = model->layer_schema(sparse).moe;
    REQUIRE(moe.active());
    CHECK(model->layer_schema(0).moe.active() == (type != "qwen3_moe"));
    CHECK(moe.n_experts == 4);
    CHECK(moe.top_k == 2);
    CHECK(moe.shared_expert == (type == "qwen2_moe"));

    at::manual_seed(3);
    const int64_t batch = 2, seq = 7, tokens = batch * seq;
    const at::Tensor x = at::randn({batch, seq, 32});
    const Seen routed = run_layer(*model, sparse, x, false);
    const Seen all = run_layer(*model, sparse, x, true);
    CHECK(at::equal(routed.output, all.output));  // statistics only: the output is routed
    CHECK(routed.tokens.at("moe.router") == tokens);
    int64_t slots = 0;
    for (int64_t e = 0; e < moe.n_experts; ++e) {
      const std::string gate = calq::core::expert_linear_name(e, "gate");
      const int64_t n = routed.tokens.count(gate) ? routed.tokens.at(gate) : 0;
      const std::string down = calq::core::expert_linear_name(e, "down");
      CHECK((routed.tokens.count(down) ? routed.tokens.at(down) : 0) == n);
      slots += n;
      for (const char* part : {"gate", "up", "down"})
        CHECK(all.tokens.at(calq::core::expert_linear_name(e, part)) == tokens);
    }
    CHECK(slots == moe.top_k * tokens);  // each token reaches top_k distinct experts
    if (moe.shared_expert) {
      CHECK(routed.tokens.at("mlp.shared.down") == tokens);
      CHECK(routed.tokens.at("moe.shared_gate") == tokens);
    }
  }
}

TEST_CASE("routers stay float unless a recipe names them", "[core][moe]") {
  calq::core::SchemeSection scheme;  // targets attn.*, mlp.*
  CHECK(calq::algorithms::resolve_target(scheme, "mlp.experts.3.down").has_value());
  CHECK(calq::algorithms::resolve_target(scheme, "mlp.shared.up").has_value());
  CHECK_FALSE(calq::algorithms::resolve_target(scheme, "moe.router").has_value());
  CHECK_FALSE(calq::algorithms::resolve_target(scheme, "moe.shared_gate").has_value());
  scheme.targets.push_back("moe.*");
  CHECK(calq::algorithms::resolve_target(scheme, "moe.router").has_value());
}
