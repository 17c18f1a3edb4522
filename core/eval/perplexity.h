// Perplexity exactly as the GPTQ protocol (algorithms.md §10.1): the token stream of the whole
// text cut into non-overlapping windows of `seqlen` (tail dropped), each window evaluated on its
// own, PPL = exp(mean NLL over every predicted token), logits in float32, NLL summed in double.
// Used by `calq eval`, `calq run`'s eval section and the sweep.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace calq::core {

class Model;

struct PerplexityOptions {
  int64_t seqlen = 2048;
  int64_t batch_size = 8;   ///< windows per forward; does not change the figure
  int64_t max_windows = 0;  ///< 0 = all; >0 evaluates only the first N windows (fast tests)
  bool show_progress = true;
  std::string label = "perplexity";
};

struct PerplexityResult {
  std::string dataset;
  std::string join;
  int64_t seqlen = 0;
  int64_t tokens = 0;    ///< tokens in the whole stream (BOS included)
  int64_t windows = 0;   ///< windows evaluated
  int64_t predicted = 0;  ///< windows · (seqlen − 1)
  double nll = 0.0;       ///< mean NLL per predicted token
  double ppl = 0.0;
  double seconds = 0.0;   ///< wall time of the forward passes (tokenization not included)
  /// Evaluated tokens (windows · seqlen) per second of forward passes.
  double tokens_per_second() const {
    return seconds > 0 ? static_cast<double>(windows * seqlen) / seconds : 0.0;
  }
};

/// `tokens` is the whole text's stream; throws naming `source` when it is shorter than a window.
PerplexityResult evaluate_perplexity(Model& model, const std::vector<int32_t>& tokens,
                                     const PerplexityOptions& options,
                                     const std::string& source = "text");

}  // namespace calq::core
