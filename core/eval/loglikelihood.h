// lm-evaluation-harness's log-likelihood requests, computed as its `hf` model computes them
// (lm_eval/api/model.py TemplateLM.loglikelihood and _encode_pair, lm_eval/models/huggingface.py
// HFLM._loglikelihood_tokens and loglikelihood_rolling, lm_eval/utils.py
// get_rolling_token_windows; lm-eval 0.4.13), so that a task's figures are lm-eval's on the same
// model and text (docs/tasks.md). Each request runs as its own forward (batch 1), float32
// log-softmax, the continuation's log-probabilities summed in float32 as torch sums them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace calq::core {

class Model;
class Tokenizer;

/// HF's tokenizer.encode(text) with its default add_special_tokens: calq's encode_as_transformers
/// with the BOS the tokenizer's files say HF prepends (Llama's <s>; none for GPT-2).
std::vector<int32_t> lm_eval_encode(const Tokenizer& tokenizer, const std::string& text);

/// lm-eval's prefix_token_id: the BOS id, else the EOS id.
int32_t lm_eval_prefix_token(const Tokenizer& tokenizer);

/// One (context, continuation) pair, tokenized as lm-eval tokenizes it: trailing whitespace of
/// the context moves to the continuation; the continuation's tokens are those of
/// encode(context + continuation) after encode(context)'s; an empty context is the prefix token
/// (or, where the continuation starts with it, the continuation's first token).
struct TokenizedRequest {
  std::vector<int32_t> context;
  std::vector<int32_t> continuation;
};
TokenizedRequest tokenize_request(const Tokenizer& tokenizer, const std::string& context,
                                  const std::string& continuation);

struct LoglikelihoodResult {
  double loglikelihood = 0.0;  ///< Σ log p(continuation token), a float32 sum
  bool is_greedy = false;      ///< every continuation token is the argmax
  int64_t tokens = 0;          ///< continuation tokens scored
};

/// The model's answer to one request: input (context ++ continuation)[−(max_length + 1):][:−1],
/// the last |continuation| positions scored.
LoglikelihoodResult loglikelihood(Model& model, const TokenizedRequest& request,
                                  int64_t max_length);

/// lm-eval's loglikelihood_rolling of one document: its tokens (lm_eval_encode) cut into
/// disjoint rolling windows of max_length with the prefix token before the first, each window
/// scored whole; returns the sum over windows (a double sum of float32 window sums).
LoglikelihoodResult rolling_loglikelihood(Model& model, const Tokenizer& tokenizer,
                                          const std::string& text, int64_t max_length);

/// lm-eval's rolling-window metrics of one whole text treated as one document (its wikitext
/// task's protocol without the detokenizer): word_perplexity = exp(−Σ log p / words),
/// byte_perplexity = exp(−Σ log p / bytes), bits_per_byte = −Σ log p / bytes / ln 2.
struct RollingMetrics {
  double loglikelihood = 0.0;
  int64_t tokens = 0, words = 0, bytes = 0;
  double word_perplexity() const;
  double byte_perplexity() const;
  double bits_per_byte() const;
};
RollingMetrics rolling_metrics(Model& model, const Tokenizer& tokenizer, const std::string& text,
                               int64_t max_length);

/// The model's context length as lm-eval's resolve_max_length reads it from the config
/// (max_position_embeddings or its family's equivalent).
int64_t lm_eval_max_length(const Model& model);

}  // namespace calq::core
