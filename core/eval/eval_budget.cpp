#include "core/eval/eval_budget.h"

#include <algorithm>
#include <cmath>

#include <c10/core/ScalarType.h>

#include "core/error.h"
#include "core/model/model.h"
#include "core/resident_memory.h"

namespace calq::core {

double perplexity_window_bytes(const Model& model, int64_t seqlen) {
  const ModelConfig& c = model.config();
  // In double: a hostile seqlen × vocab must not overflow on its way to being refused.
  const double tokens = static_cast<double>(seqlen);
  constexpr double kLogitCopies = 2;  // logits, then log_softmax's output
  constexpr double kMlpCopies = 3;    // gate, up, act(gate) · up
  const double width = static_cast<double>(std::max(c.intermediate_size, c.hidden_size));
  const double dtype_bytes = static_cast<double>(c10::elementSize(model.compute_dtype()));
  return kLogitCopies * tokens * static_cast<double>(c.vocab_size) * 4.0 +
         kMlpCopies * tokens * width * dtype_bytes;
}

void check_perplexity_fits(const Model& model, int64_t seqlen, int64_t batch_size,
                           const std::string& seqlen_key) {
  const int64_t positions = model.config().max_positions;
  CALQ_CHECK(positions <= 0 || seqlen <= positions,
             "{}: {} tokens per window, but the model has {} positions "
             "(max_position_embeddings); expected a seqlen of at most {}",
             seqlen_key, seqlen, positions, positions);
  if (model.device() != "cpu")
    return;  // the host's free memory says nothing about an accelerator's
  const double available = available_mb() * 1024.0 * 1024.0;
  if (available <= 0)
    return;
  const double per_window = perplexity_window_bytes(model, seqlen);
  const double need = per_window * static_cast<double>(std::max<int64_t>(1, batch_size));
  if (need <= available)
    return;
  const auto fitting = static_cast<int64_t>(std::floor(available / per_window));
  const std::string way_out =
      fitting >= 1 ? fmt::format("--batch-size {} or smaller", fitting)
                   : fmt::format("a shorter {} (one window alone needs {:.3g} GB)", seqlen_key,
                                 per_window / 1e9);
  fail("evaluation: {} windows × {} tokens × {} vocab: the float32 logits, log-probabilities and "
       "MLP activations need {:.1f} GB, over the {:.1f} GB of memory available; expected {}",
       batch_size, seqlen, model.config().vocab_size, need / 1e9, available / 1e9, way_out);
}

}  // namespace calq::core
