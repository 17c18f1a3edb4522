#include "core/eval/kl_divergence.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/io/safetensors.h"
#include "core/model/model.h"

namespace calq::core {
namespace {

constexpr const char* kFormat = "calq-kl-base-v1";

/// log Σ_{j outside ids} exp(logp_j), exactly (logsumexp with the top k masked out): [b, s].
at::Tensor rest_logprob(const at::Tensor& logp, const at::Tensor& ids) {
  return at::logsumexp(logp.scatter(-1, ids, -std::numeric_limits<float>::infinity()), -1);
}

/// log-probabilities of the next token at every position but the last: [b, seqlen − 1, vocab].
at::Tensor next_token_logprobs(Model& model, const at::Tensor& ids) {
  at::NoGradGuard no_grad;
  const at::Tensor logits = model.forward(ids.to(at::Device(model.device()))).to(at::kFloat).cpu();
  return at::log_softmax(logits.narrow(1, 0, logits.size(1) - 1), -1);
}

/// numpy.percentile(values, q) with linear interpolation; sorts `values`.
double percentile(std::vector<double>& values, double q) {
  std::sort(values.begin(), values.end());
  const double at = q / 100.0 * static_cast<double>(values.size() - 1);
  const auto lo = static_cast<size_t>(std::floor(at));
  const size_t hi = std::min(lo + 1, values.size() - 1);
  return values[lo] + (values[hi] - values[lo]) * (at - static_cast<double>(lo));
}

}  // namespace

TopKDistribution topk_distribution(Model& model, const std::vector<int32_t>& tokens,
                                   int64_t seqlen, int64_t windows, int64_t k, int64_t batch) {
  CALQ_CHECK(seqlen >= 2 && windows >= 1 && static_cast<int64_t>(tokens.size()) >= windows * seqlen,
             "kl base: {} tokens do not hold {} windows of {}", tokens.size(), windows, seqlen);
  const int64_t vocab = model.config().vocab_size;
  CALQ_CHECK(k >= 1 && k <= vocab, "kl base: top-k {} is not in [1, {}] (the vocabulary)", k, vocab);
  TopKDistribution out;
  out.source = model.path();
  out.input_ids = at::from_blob(const_cast<int32_t*>(tokens.data()), {windows * seqlen}, at::kInt)
                      .view({windows, seqlen})
                      .to(at::kLong);
  std::vector<at::Tensor> ids, logprobs, rest, nll;
  for (int64_t w = 0; w < windows; w += batch) {
    const at::Tensor x = out.input_ids.narrow(0, w, std::min(batch, windows - w));
    const at::Tensor logp = next_token_logprobs(model, x);
    const auto top = logp.topk(k, -1, /*largest=*/true, /*sorted=*/true);
    ids.push_back(std::get<1>(top).to(at::kInt));
    logprobs.push_back(std::get<0>(top));
    rest.push_back(rest_logprob(logp, std::get<1>(top)));
    nll.push_back(-logp.gather(-1, x.narrow(1, 1, seqlen - 1).unsqueeze(-1)).squeeze(-1).to(at::kDouble));
  }
  out.topk_ids = at::cat(ids, 0);
  out.topk_logprobs = at::cat(logprobs, 0);
  out.rest_logprob = at::cat(rest, 0);
  out.nll = at::cat(nll, 0);
  return out;
}

void save_topk_distribution(const TopKDistribution& base, const std::string& path) {
  write_safetensors(path,
                    {{"input_ids", base.input_ids}, {"topk_ids", base.topk_ids},
                     {"topk_logprobs", base.topk_logprobs}, {"rest_logprob", base.rest_logprob},
                     {"nll", base.nll}},
                    {{"calq", kFormat}, {"k", std::to_string(base.k())}, {"source", base.source}});
}

TopKDistribution load_topk_distribution(const std::string& path) {
  const SafetensorsFile file(path);
  const auto format = file.metadata().find("calq");
  CALQ_CHECK(format != file.metadata().end() && format->second == kFormat,
             "{}: not a KL base (metadata calq = \"{}\"); expected a file `calq eval "
             "--save-logits` wrote", path,
             format == file.metadata().end() ? std::string() : format->second);
  TopKDistribution out;
  for (const char* name : {"input_ids", "topk_ids", "topk_logprobs", "rest_logprob", "nll"})
    CALQ_CHECK(file.contains(name), "{}: no tensor \"{}\"; expected a KL base", path, name);
  out.input_ids = file.load("input_ids");
  out.topk_ids = file.load("topk_ids");
  out.topk_logprobs = file.load("topk_logprobs");
  out.rest_logprob = file.load("rest_logprob");
  out.nll = file.load("nll");
  const auto source = file.metadata().find("source");
  out.source = source == file.metadata().end() ? path : source->second;
  const int64_t w = out.input_ids.dim() == 2 ? out.input_ids.size(0) : -1;
  const int64_t s = out.input_ids.dim() == 2 ? out.input_ids.size(1) : -1;
  CALQ_CHECK(out.input_ids.scalar_type() == at::kLong && w >= 1 && s >= 2 &&
                 out.topk_ids.scalar_type() == at::kInt && out.topk_ids.dim() == 3 &&
                 out.topk_ids.size(0) == w && out.topk_ids.size(1) == s - 1 &&
                 out.topk_logprobs.scalar_type() == at::kFloat &&
                 out.topk_logprobs.sizes() == out.topk_ids.sizes() &&
                 out.rest_logprob.scalar_type() == at::kFloat &&
                 out.rest_logprob.sizes() == out.nll.sizes() &&
                 out.nll.scalar_type() == at::kDouble && out.nll.dim() == 2 &&
                 out.nll.size(0) == w && out.nll.size(1) == s - 1,
             "{}: tensors of inconsistent shapes or dtypes; expected input_ids int64 [W, S], "
             "topk_ids int32 and topk_logprobs float32 [W, S-1, k], rest_logprob float32 and nll "
             "float64 [W, S-1]", path);
  return out;
}

std::string KlResult::json() const {
  return nlohmann::json{{"base", base}, {"tokens", tokens}, {"top_k", k}, {"kl_mean", kl_mean},
                        {"kl_median", kl_median}, {"kl_p99", kl_p99}, {"kl_max", kl_max},
                        {"top1_agreement", top1_agreement}, {"ppl", ppl}, {"ppl_base", ppl_base},
                        {"ppl_ratio", ppl_ratio()}, {"base_tail_mass", tail_mass}}
      .dump();
}

KlResult compare_to_base(Model& model, const TopKDistribution& base, int64_t batch) {
  const int64_t windows = base.windows(), seqlen = base.seqlen();
  CALQ_CHECK(base.topk_ids.max().item<int64_t>() < model.config().vocab_size,
             "kl base {}: token ids beyond the model's vocabulary of {}; expected the base of "
             "this model family", base.source, model.config().vocab_size);
  KlResult r;
  r.k = base.k();
  r.base = base.source;
  std::vector<double> kl;
  kl.reserve(static_cast<size_t>(windows * (seqlen - 1)));
  double agree = 0.0, nll_base = 0.0, nll = 0.0, tail = 0.0;
  for (int64_t w = 0; w < windows; w += batch) {
    const int64_t b = std::min(batch, windows - w);
    const at::Tensor x = base.input_ids.narrow(0, w, b);
    const at::Tensor logq = next_token_logprobs(model, x);
    const at::Tensor ids = base.topk_ids.narrow(0, w, b).to(at::kLong);
    // The (k + 1)-bucket distributions: the base's top k and the rest, in float64.
    const at::Tensor logp_k = base.topk_logprobs.narrow(0, w, b).to(at::kDouble);
    const at::Tensor logq_k = logq.gather(-1, ids).to(at::kDouble);
    const at::Tensor p_k = logp_k.exp();
    const at::Tensor logp_rest = base.rest_logprob.narrow(0, w, b).to(at::kDouble);
    const at::Tensor logq_rest = rest_logprob(logq, ids).to(at::kDouble);
    const at::Tensor p_rest = logp_rest.exp();
    // Nothing outside the top k (k = vocabulary, or underflow): the bucket adds nothing.
    const at::Tensor rest = at::where(p_rest > 0, p_rest * (logp_rest - logq_rest),
                                      at::zeros_like(p_rest));
    const at::Tensor per_token = (p_k * (logp_k - logq_k)).sum(-1) + rest;  // [b, seqlen − 1]
    const at::Tensor flat = per_token.reshape({-1}).contiguous();
    kl.insert(kl.end(), flat.data_ptr<double>(), flat.data_ptr<double>() + flat.numel());
    agree += logq.argmax(-1).eq(ids.select(-1, 0)).sum().item<double>();
    nll_base += base.nll.narrow(0, w, b).sum().item<double>();
    nll -= logq.gather(-1, x.narrow(1, 1, seqlen - 1).unsqueeze(-1)).to(at::kDouble).sum().item<double>();
    tail += p_rest.sum().item<double>();
  }
  r.tokens = static_cast<int64_t>(kl.size());
  const double n = static_cast<double>(r.tokens);
  double sum = 0.0;
  for (double v : kl) sum += v;
  r.kl_mean = sum / n;
  r.kl_max = *std::max_element(kl.begin(), kl.end());
  r.kl_p99 = percentile(kl, 99.0);
  r.kl_median = percentile(kl, 50.0);
  r.top1_agreement = agree / n;
  r.ppl_base = std::exp(nll_base / n);
  r.ppl = std::exp(nll / n);
  r.tail_mass = tail / n;
  return r;
}

}  // namespace calq::core
