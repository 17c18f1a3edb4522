// core/eval/kl_divergence: the (k + 1)-bucket KL against the full KL computed directly from both
// models' logits (equal when k is the vocabulary, never above it when k is smaller), zero against
// itself, the saved base read back bit for bit, and a foreign file refused with its name.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <filesystem>
#include <vector>

#include <catch2/catch.hpp>

#include "core/error.h"
#include "core/eval/kl_divergence.h"
#include "tests/support/tiny_model.h"

namespace fs = std::filesystem;
using namespace calq;

namespace {

std::vector<int32_t> stream(const test::TinyModelSpec& spec, int64_t n) {
  const at::Tensor ids = test::seeded_windows(spec, 7, 1, n).reshape({-1}).to(at::kInt).contiguous();
  return std::vector<int32_t>(ids.data_ptr<int32_t>(), ids.data_ptr<int32_t>() + n);
}

/// Σ_tokens KL(P ‖ Q) / tokens over the positions that predict a next token, in float64.
double full_kl(core::Model& p, core::Model& q, const at::Tensor& ids) {
  const at::Tensor lp = at::log_softmax(p.forward(ids).to(at::kDouble), -1).narrow(1, 0, ids.size(1) - 1);
  const at::Tensor lq = at::log_softmax(q.forward(ids).to(at::kDouble), -1).narrow(1, 0, ids.size(1) - 1);
  return (lp.exp() * (lp - lq)).sum(-1).mean().item<double>();
}

}  // namespace

TEST_CASE("KL to a base: exact at k = vocabulary, a lower bound below, zero to itself", "[kl]") {
  const fs::path dir = fs::temp_directory_path() / "calq_kl_test";
  fs::remove_all(dir);
  const test::TinyModelSpec a = test::small_model(1), b = test::small_model(2);
  test::write_tiny_model(dir / "a", a);
  test::write_tiny_model(dir / "b", b);
  auto base_model = test::load_tiny_model(dir / "a");
  auto other = test::load_tiny_model(dir / "b");
  const int64_t seqlen = 16, windows = 3;
  const std::vector<int32_t> tokens = stream(a, seqlen * windows);

  const core::TopKDistribution exact = core::topk_distribution(*base_model, tokens, seqlen, windows, a.vocab, 2);
  const core::KlResult r = core::compare_to_base(*other, exact, 2);
  at::NoGradGuard no_grad;
  const double want = full_kl(*base_model, *other, exact.input_ids);
  CHECK(r.tokens == windows * (seqlen - 1));
  CHECK(r.kl_mean == Approx(want).epsilon(1e-5));
  CHECK(r.tail_mass == 0.0);

  const core::KlResult coarse = core::compare_to_base(*other, core::topk_distribution(*base_model, tokens, seqlen, windows, 4, 3), 1);
  CHECK(coarse.kl_mean <= r.kl_mean + 1e-9);
  CHECK(coarse.kl_mean > 0.0);
  CHECK(coarse.top1_agreement == r.top1_agreement);

  const core::KlResult self = core::compare_to_base(*base_model, exact, 3);
  CHECK(std::abs(self.kl_mean) < 1e-6);
  CHECK(self.top1_agreement == 1.0);
  CHECK(self.ppl == Approx(self.ppl_base).epsilon(1e-6));

  const std::string file = (dir / "base.safetensors").string();
  core::save_topk_distribution(exact, file);
  const core::TopKDistribution back = core::load_topk_distribution(file);
  CHECK(back.topk_ids.equal(exact.topk_ids));
  CHECK(back.topk_logprobs.equal(exact.topk_logprobs));
  CHECK(back.rest_logprob.equal(exact.rest_logprob));
  CHECK(back.nll.equal(exact.nll));
  CHECK(core::compare_to_base(*other, back, 2).kl_mean == r.kl_mean);

  // A safetensors file that is not a KL base: one error naming it.
  core::write_safetensors((dir / "other.safetensors").string(), {{"x", at::zeros({2})}});
  CHECK_THROWS_WITH(core::load_topk_distribution((dir / "other.safetensors").string()),
                    Catch::Contains("other.safetensors: not a KL base"));
  fs::remove_all(dir);
}
