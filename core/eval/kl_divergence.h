// Divergence of a model from a base (the float model) on the same windows, as llama.cpp's
// `perplexity --kl-divergence` reports it (docs/tasks.md "KL divergence"): per predicted token
// KL(P_base ‖ P_model), its mean, median and 99th percentile, how often the two argmaxes agree,
// and both perplexities on those tokens. The base is kept as its top-k log-probabilities per token
// plus one bucket for the rest of the vocabulary, so a file of it is small
// (`calq eval --save-logits`) and sweeps compute the float model once; the KL is then that of the
// two (k + 1)-bucket distributions, never more than the full KL (grouping outcomes cannot
// increase a KL divergence), and exact as k reaches the vocabulary.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

namespace calq::core {

class Model;

/// Default k. What the base puts outside its top k is reported (KlResult::tail_mass): a small
/// model with a flat distribution leaves more there than a large, peaky one.
constexpr int64_t kDefaultKlTopK = 256;

struct TopKDistribution {
  at::Tensor input_ids;      ///< [windows, seqlen] int64: the windows scored
  at::Tensor topk_ids;       ///< [windows, seqlen − 1, k] int32: the base's k likeliest tokens
  at::Tensor topk_logprobs;  ///< [windows, seqlen − 1, k] float32, descending
  at::Tensor rest_logprob;   ///< [windows, seqlen − 1] float32: log P_base(outside the top k)
  at::Tensor nll;            ///< [windows, seqlen − 1] float64: −log P_base(next token)
  std::string source;        ///< the base model's path
  int64_t k() const { return topk_ids.size(2); }
  int64_t windows() const { return input_ids.size(0); }
  int64_t seqlen() const { return input_ids.size(1); }
};

/// The base distribution of `model` on the first `windows` windows of `seqlen` tokens of
/// `tokens` (the stream perplexity_tokens gives), `batch` windows per forward.
TopKDistribution topk_distribution(Model& model, const std::vector<int32_t>& tokens,
                                   int64_t seqlen, int64_t windows, int64_t k, int64_t batch);

/// safetensors, written atomically; metadata names the format, k and the source.
void save_topk_distribution(const TopKDistribution& base, const std::string& path);
/// Throws naming the file and the tensor when it is not one save_topk_distribution wrote.
TopKDistribution load_topk_distribution(const std::string& path);

struct KlResult {
  int64_t tokens = 0;  ///< predicted tokens compared
  int64_t k = 0;
  double kl_mean = 0.0, kl_median = 0.0, kl_p99 = 0.0, kl_max = 0.0;
  double top1_agreement = 0.0;  ///< share of tokens whose argmaxes agree
  double ppl_base = 0.0, ppl = 0.0;
  double ppl_ratio() const { return ppl_base > 0 ? ppl / ppl_base : 0.0; }
  double tail_mass = 0.0;  ///< mean base probability outside the top k
  std::string base;
  /// The figures as a JSON object (report.json eval.kl, calq eval --json).
  std::string json() const;
};

/// `model` on the base's windows, token by token against it. Median and 99th percentile as
/// numpy's (linear interpolation between order statistics).
KlResult compare_to_base(Model& model, const TopKDistribution& base, int64_t batch);

}  // namespace calq::core
