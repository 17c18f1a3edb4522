// Picks the next token from a position's logits: greedy (argmax), or a seeded draw after
// transformers' logits warpers in their generate() order — temperature, top-k, top-p. Used by
// core/eval/generation.h (`calq generate`).
#pragma once

#include <cstdint>
#include <memory>

#include <ATen/core/Tensor.h>

namespace calq::core {

struct SamplingOptions {
  bool greedy = true;        ///< argmax; the other fields are ignored
  double temperature = 1.0;  ///< > 0; logits are divided by it (TemperatureLogitsWarper)
  int64_t top_k = 0;         ///< keep the k largest logits, ties at the k-th kept; 0: all
  double top_p = 1.0;        ///< keep the smallest set of tokens with probability ≥ top_p; 1: all
  uint64_t seed = 0;         ///< seeds the draws' generator (ATen's CPU generator, mt19937)
};

/// Throws calq::Error naming the option ("--temperature 0: ...; expected > 0") for values no
/// sampler takes.
void check_sampling_options(const SamplingOptions& options);

class Sampler {
 public:
  explicit Sampler(const SamplingOptions& options);
  ~Sampler();
  Sampler(const Sampler&) = delete;
  Sampler& operator=(const Sampler&) = delete;

  /// logits [vocab] (any float dtype, any device) -> a token id. Greedy: the first index of the
  /// largest logit (ties go to the lowest id, as torch.argmax). Sampling: logits in float32 on
  /// the CPU, divided by the temperature, top-k then top-p masked to -inf, softmax, one draw
  /// (torch.multinomial) from this sampler's generator.
  int64_t next(const at::Tensor& logits);

 private:
  SamplingOptions options_;
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace calq::core
