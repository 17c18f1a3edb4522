#include "core/eval/loglikelihood.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/eval/python_text.h"
#include "core/model/model.h"
#include "core/tokenizer/tokenizer.h"

namespace calq::core {
namespace {

/// lm-eval's DEFAULT_MAX_LENGTH (lm_eval/models/utils.py), used when the config names none.
constexpr int64_t kDefaultMaxLength = 2048;

/// Scores the last `n_scored` positions' next tokens of `input ++ [last]`, as
/// HFLM._loglikelihood_tokens: log_softmax in float32 over the logits of `input`.
LoglikelihoodResult score(Model& model, const std::vector<int32_t>& input,
                          const std::vector<int32_t>& targets) {
  CALQ_ASSERT(!input.empty() && !targets.empty() && targets.size() <= input.size(),
              "loglikelihood: {} input tokens for {} targets", input.size(), targets.size());
  std::vector<int64_t> ids(input.begin(), input.end());
  const at::Tensor batch = at::tensor(ids, at::kLong).view({1, -1}).to(model.device());
  at::Tensor logits;
  {
    at::NoGradGuard no_grad;
    logits = model.forward(batch).to(at::kFloat).squeeze(0);  // [seq, vocab]
  }
  const auto n = static_cast<int64_t>(targets.size());
  const at::Tensor scored = at::log_softmax(logits.narrow(0, logits.size(0) - n, n), -1).cpu();
  std::vector<int64_t> want(targets.begin(), targets.end());
  const at::Tensor target = at::tensor(want, at::kLong);
  LoglikelihoodResult r;
  r.tokens = n;
  r.is_greedy = scored.argmax(-1).equal(target);
  r.loglikelihood = scored.gather(1, target.unsqueeze(1)).sum().item<double>();
  return r;
}

}  // namespace

std::vector<int32_t> lm_eval_encode(const Tokenizer& tokenizer, const std::string& text) {
  return tokenizer.encode_as_transformers(text, /*add_bos=*/true);
}

int32_t lm_eval_prefix_token(const Tokenizer& tokenizer) {
  if (const auto bos = tokenizer.bos_id()) return *bos;
  const auto eos = tokenizer.eos_id();
  CALQ_CHECK(eos.has_value(), "{}: the tokenizer has neither a BOS nor an EOS token; lm-eval "
             "conditions an empty context on one", tokenizer.path());
  return *eos;
}

TokenizedRequest tokenize_request(const Tokenizer& tokenizer, const std::string& context,
                                  const std::string& continuation) {
  TokenizedRequest r;
  if (context.empty()) {
    // TemplateLM.loglikelihood: the continuation without special tokens after the prefix token.
    r.continuation = tokenizer.encode_as_transformers(continuation, /*add_bos=*/false);
    CALQ_CHECK(!r.continuation.empty(), "lm-eval request: an empty context and an empty "
               "continuation; expected text to score");
    const int32_t prefix = lm_eval_prefix_token(tokenizer);
    if (prefix != r.continuation.front()) {
      r.context = {prefix};
    } else {
      r.context = {r.continuation.front()};
      r.continuation.erase(r.continuation.begin());
    }
    return r;
  }
  // _encode_pair: the context's trailing whitespace starts the continuation.
  const size_t kept = python_text::rstripped_size(context);
  const std::string ctx = context.substr(0, kept);
  const std::string cont = context.substr(kept) + continuation;
  const std::vector<int32_t> whole = lm_eval_encode(tokenizer, ctx + cont);
  r.context = lm_eval_encode(tokenizer, ctx);
  const size_t n = std::min(r.context.size(), whole.size());
  r.continuation.assign(whole.begin() + static_cast<std::ptrdiff_t>(n), whole.end());
  return r;
}

LoglikelihoodResult loglikelihood(Model& model, const TokenizedRequest& request,
                                  int64_t max_length) {
  CALQ_CHECK(!request.continuation.empty(), "lm-eval request: the continuation has no token of "
             "its own (it tokenizes into the context); expected a non-empty continuation");
  std::vector<int32_t> all = request.context;
  all.insert(all.end(), request.continuation.begin(), request.continuation.end());
  const auto keep = static_cast<size_t>(std::min<int64_t>(static_cast<int64_t>(all.size()),
                                                          max_length + 1));
  std::vector<int32_t> input(all.end() - static_cast<std::ptrdiff_t>(keep), all.end() - 1);
  // A continuation longer than the window keeps only what the window predicts.
  const size_t n = std::min(request.continuation.size(), input.size());
  std::vector<int32_t> targets(request.continuation.end() - static_cast<std::ptrdiff_t>(n),
                               request.continuation.end());
  return score(model, input, targets);
}

LoglikelihoodResult rolling_loglikelihood(Model& model, const Tokenizer& tokenizer,
                                          const std::string& text, int64_t max_length) {
  CALQ_CHECK(max_length >= 1, "rolling log-likelihood: max length {} < 1", max_length);
  const std::vector<int32_t> tokens = lm_eval_encode(tokenizer, text);
  LoglikelihoodResult total;
  total.is_greedy = true;
  if (tokens.empty()) return total;
  const auto n = static_cast<int64_t>(tokens.size());
  // get_rolling_token_windows with context_len 1, then make_disjoint_window: every window's
  // input is the max_length tokens before its predictions, the first led by the prefix token.
  auto add = [&](const std::vector<int32_t>& input, const std::vector<int32_t>& targets) {
    const LoglikelihoodResult w = score(model, input, targets);
    total.loglikelihood += w.loglikelihood;
    total.tokens += w.tokens;
    total.is_greedy = total.is_greedy && w.is_greedy;
  };
  const int64_t first = std::min(max_length, n);
  std::vector<int32_t> input{lm_eval_prefix_token(tokenizer)};
  input.insert(input.end(), tokens.begin(), tokens.begin() + first - 1);
  add(input, std::vector<int32_t>(tokens.begin(), tokens.begin() + first));
  for (int64_t predicted = first; predicted < n;) {
    const int64_t len = std::min(n - predicted, max_length);
    const int64_t end = predicted + len;
    add(std::vector<int32_t>(tokens.begin() + (end - max_length - 1), tokens.begin() + end - 1),
        std::vector<int32_t>(tokens.begin() + predicted, tokens.begin() + end));
    predicted = end;
  }
  return total;
}

double RollingMetrics::word_perplexity() const {
  return std::exp(-loglikelihood / static_cast<double>(words));
}
double RollingMetrics::byte_perplexity() const {
  return std::exp(-loglikelihood / static_cast<double>(bytes));
}
double RollingMetrics::bits_per_byte() const {
  return -loglikelihood / static_cast<double>(bytes) / std::log(2.0);
}

RollingMetrics rolling_metrics(Model& model, const Tokenizer& tokenizer, const std::string& text,
                               int64_t max_length) {
  const LoglikelihoodResult r = rolling_loglikelihood(model, tokenizer, text, max_length);
  RollingMetrics m;
  m.loglikelihood = r.loglikelihood;
  m.tokens = r.tokens;
  m.words = python_text::split_whitespace_count(text);
  m.bytes = static_cast<int64_t>(text.size());
  return m;
}

int64_t lm_eval_max_length(const Model& model) {
  return model.config().max_positions > 0 ? model.config().max_positions : kDefaultMaxLength;
}

}  // namespace calq::core
