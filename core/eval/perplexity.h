// Perplexity exactly as the GPTQ protocol (docs/algorithms.md §10.1): the token stream of the whole
// text cut into non-overlapping windows of `seqlen` (tail dropped), each window evaluated on its
// own, PPL = exp(mean NLL over every predicted token), logits in float32, NLL summed in double.
// Used by `calq eval`, `calq run`'s eval section and the sweep.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace calq::core {

class Model;
class Tokenizer;

struct PerplexityOptions {
  int64_t seqlen = 2048;
  int64_t batch_size = 8;   ///< windows per forward; does not change the figure
  int64_t max_windows = 0;  ///< 0 = all; >0 evaluates only the first N windows (fast tests)
  bool show_progress = true;
  std::string label = "perplexity";
  std::string seqlen_key = "--seqlen";  ///< names the window length in messages
};

struct PerplexityResult {
  std::string dataset;
  std::string join;
  int64_t seqlen = 0;
  /// Tokens of the stream evaluated from (BOS included): the whole text's, or with max_windows
  /// the first max_windows × seqlen when the text has them (perplexity_tokens).
  int64_t tokens = 0;
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

/// The stream evaluate_perplexity reads: encode(text) with one BOS, encoded in chunks
/// (chunked_encoding.h) so that with options.max_windows only the first max_windows × seqlen
/// tokens are kept and little more of the text is tokenized. Without max_windows, the whole
/// text's tokens (4 bytes each) beside the text, with one chunk's tokenizer memory on top.
std::vector<int32_t> perplexity_tokens(const Tokenizer& tokenizer, std::string_view text,
                                       const PerplexityOptions& options);

/// `tokens` is the text's stream (perplexity_tokens); throws naming `source` when it is shorter
/// than a window.
PerplexityResult evaluate_perplexity(Model& model, const std::vector<int32_t>& tokens,
                                     const PerplexityOptions& options,
                                     const std::string& source = "text");

}  // namespace calq::core
