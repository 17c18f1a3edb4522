#include "core/eval/sampler.h"

#include <cmath>
#include <limits>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include "core/error.h"

namespace calq::core {

struct Sampler::State {
  at::Generator generator;
};

void check_sampling_options(const SamplingOptions& o) {
  if (o.greedy) return;
  CALQ_CHECK(std::isfinite(o.temperature) && o.temperature > 0,
             "--temperature {}: not a sampling temperature; expected a number > 0 (or --greedy)",
             o.temperature);
  CALQ_CHECK(o.top_k >= 0, "--top-k {}: negative; expected 0 (all tokens) or more", o.top_k);
  CALQ_CHECK(std::isfinite(o.top_p) && o.top_p > 0 && o.top_p <= 1,
             "--top-p {}: out of range; expected 0 < top-p <= 1", o.top_p);
}

Sampler::Sampler(const SamplingOptions& options)
    : options_(options), state_(std::make_unique<State>()) {
  check_sampling_options(options_);
  state_->generator = at::detail::createCPUGenerator(options_.seed);
}

Sampler::~Sampler() = default;

int64_t Sampler::next(const at::Tensor& logits) {
  CALQ_ASSERT(logits.dim() == 1 && logits.size(0) > 0, "sampler: logits of {} dimensions",
              logits.dim());
  if (options_.greedy) return logits.argmax().item<int64_t>();  // first maximum: lowest id

  // transformers' warpers in generate()'s order: TemperatureLogitsWarper, TopKLogitsWarper,
  // TopPLogitsWarper; then softmax and torch.multinomial.
  constexpr double kFiltered = -std::numeric_limits<double>::infinity();
  at::Tensor scores = logits.to(at::kCPU, at::kFloat).div(options_.temperature);
  const int64_t vocab = scores.size(0);
  if (options_.top_k > 0 && options_.top_k < vocab) {
    // Every logit below the k-th largest goes; ties with it stay.
    const at::Tensor kth = std::get<0>(at::topk(scores, options_.top_k)).select(0, -1);
    scores = scores.masked_fill(scores < kth, kFiltered);
  }
  if (options_.top_p < 1.0) {
    // Ascending sort: drop the low tail whose cumulative probability is ≤ 1 − top_p, always
    // keeping the most likely token.
    const auto [sorted, order] = at::sort(scores, /*dim=*/0, /*descending=*/false);
    at::Tensor drop = at::softmax(sorted, 0).cumsum(0) <= (1.0 - options_.top_p);
    drop.narrow(0, vocab - 1, 1).fill_(false);
    scores = scores.masked_fill(at::zeros_like(drop).scatter_(0, order, drop), kFiltered);
  }
  const at::Tensor probs = at::softmax(scores, 0);
  return at::multinomial(probs, 1, /*replacement=*/false, state_->generator).item<int64_t>();
}

}  // namespace calq::core
