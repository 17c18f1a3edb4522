#include "core/eval/perplexity.h"

#include <ATen/core/grad_mode.h>
#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <cmath>

#include "core/dist/communicator.h"
#include "core/error.h"
#include "core/eval/non_finite_stage.h"
#include "core/eval/eval_budget.h"
#include "core/model/model.h"
#include "core/numeric_guard.h"
#include "core/progress.h"
#include "core/tokenizer/chunked_encoding.h"

namespace calq::core {

std::vector<int32_t> perplexity_tokens(const Tokenizer& tokenizer, std::string_view text,
                                       const PerplexityOptions& options) {
  // In double first: a hostile max_windows × seqlen must not wrap.
  const bool bounded = options.max_windows > 0 &&
                       static_cast<double>(options.max_windows) *
                               static_cast<double>(options.seqlen) < 1e15;
  const size_t needed =
      bounded ? static_cast<size_t>(options.max_windows) * static_cast<size_t>(options.seqlen) : 0;
  std::vector<int32_t> tokens = encode_prefix(tokenizer, text, /*add_bos=*/true, needed);
  if (needed > 0 && tokens.size() > needed)
    tokens.resize(needed);  // the rest of the last chunk: no window reads it
  return tokens;
}

PerplexityResult evaluate_perplexity(Model& model, const std::vector<int32_t>& tokens,
                                     const PerplexityOptions& options, const std::string& source) {
  CALQ_CHECK(options.seqlen >= 2, "--seqlen: {} is too short; expected at least 2", options.seqlen);
  const auto n_tokens = static_cast<int64_t>(tokens.size());
  int64_t n_windows = n_tokens / options.seqlen;
  CALQ_CHECK(n_windows > 0, "{}: {} tokens is shorter than one window of {}; expected at least {}",
             source, n_tokens, options.seqlen, options.seqlen);
  if (options.max_windows > 0) n_windows = std::min(n_windows, options.max_windows);
  const int64_t batch = std::min(std::max<int64_t>(1, options.batch_size), n_windows);
  check_perplexity_fits(model, options.seqlen, batch, options.seqlen_key);

  // Each batch's ids are widened on their own: no int64 copy of the whole stream.
  const at::Tensor all = at::from_blob(const_cast<int32_t*>(tokens.data()), {n_tokens}, at::kInt)
                             .narrow(0, 0, n_windows * options.seqlen)
                             .view({n_windows, options.seqlen});
  at::NoGradGuard no_grad;
  // Ranks (core/dist): each evaluates a contiguous share of whole batches; every batch's NLL sum
  // is gathered and added in batch order, exactly as one process adds them.
  dist::Communicator& ranks = dist::Communicator::world();
  const dist::Share share = dist::share_of(n_windows, batch, ranks.rank(), ranks.size());
  std::vector<double> batch_sums;
  Progress progress(options.label, share.size(), options.show_progress);
  const auto start = std::chrono::steady_clock::now();
  for (int64_t w = share.begin; w < share.end; w += batch) {
    const int64_t b = std::min(batch, share.end - w);
    const at::Tensor ids = all.narrow(0, w, b).to(at::kLong).to(at::Device(model.device()));
    const at::Tensor logits = model.forward(ids).to(at::kFloat);  // [b, seqlen, vocab]
    const at::Tensor log_probs =
        at::log_softmax(logits.narrow(1, 0, options.seqlen - 1), /*dim=*/-1);
    const at::Tensor targets = ids.narrow(1, 1, options.seqlen - 1).unsqueeze(-1);
    const at::Tensor nll = -log_probs.gather(-1, targets).squeeze(-1);  // [b, seqlen - 1]
    if (count_non_finite(nll) > 0) {
      // A NaN perplexity is no result: name the stage that produced it, from the first window
      // of the batch that has one (windows are independent, so it fails alone too).
      const int64_t k = at::logical_not(at::isfinite(nll).all(1)).nonzero()[0][0].item<int64_t>();
      fail("{}: {}", model.path(), describe_non_finite_stage(model, ids.narrow(0, k, 1), w + k));
    }
    batch_sums.push_back(nll.to(at::kDouble).sum().item<double>());
    progress.step(b);
  }
  progress.finish();
  const at::Tensor local_sums =
      at::tensor(batch_sums, at::kDouble).reshape({static_cast<int64_t>(batch_sums.size())});
  const at::Tensor every_sum = ranks.gather_rows(local_sums, options.label + ": NLL sums");
  double nll_sum = 0.0;
  const double* sums = every_sum.data_ptr<double>();
  for (int64_t k = 0; k < every_sum.numel(); ++k) nll_sum += sums[k];

  PerplexityResult result;
  result.seqlen = options.seqlen;
  result.tokens = n_tokens;
  result.windows = n_windows;
  result.predicted = n_windows * (options.seqlen - 1);
  result.nll = nll_sum / static_cast<double>(result.predicted);
  result.ppl = std::exp(result.nll);
  CALQ_CHECK(std::isfinite(result.ppl),
             "{}: perplexity exp({}) overflows; expected a mean NLL below 709 (the logits are far "
             "out of range)", model.path(), result.nll);
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace calq::core
