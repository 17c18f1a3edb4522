// Checks an evaluation's shape against the model and the machine before anything is allocated:
// a window longer than the model's positions, or a batch of windows whose logits would not fit
// in memory, is refused with the figure and the way out (issue 18, class 7c). Used by
// evaluate_perplexity and, before any work, by `calq run` for each recipe eval.
#pragma once

#include <cstdint>
#include <string>

namespace calq::core {

class Model;

/// Bytes one window of `seqlen` tokens needs during a perplexity forward, beyond the weights:
/// the float32 logits and their log-probabilities ([seqlen, vocab] each) and the widest MLP
/// activations (gate, up and their product: [seqlen, intermediate] each, compute dtype).
double perplexity_window_bytes(const Model& model, int64_t seqlen);

/// Throws when `seqlen` exceeds the model's max_positions, or (on CPU, where the free memory is
/// known) when `batch_size` windows need more than the memory available; `seqlen_key` names the
/// option in the message ("--seqlen", "eval.perplexity[0].seqlen").
void check_perplexity_fits(const Model& model, int64_t seqlen, int64_t batch_size,
                           const std::string& seqlen_key);

}  // namespace calq::core
