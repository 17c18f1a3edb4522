// Text generation with a KV cache (`calq generate`, docs/generate.md): the prompt is tokenized
// (with the tokenizer's BOS, as perplexity does), run once (prefill), then each new token costs
// one token's forward (Model::forward_cached). Works on any loaded model: float, fake-quantized
// in memory, exported checkpoints, adapters installed.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "core/eval/sampler.h"

namespace calq::core {

class Model;

struct GenerateOptions {
  int64_t max_new_tokens = 128;
  SamplingOptions sampling;
  /// Tokens that end generation (not part of the output). Empty: default_stop_ids(model).
  std::vector<int32_t> stop_ids;
};

enum class StopReason { Eos, MaxNewTokens, MaxContext };
const char* stop_reason_name(StopReason reason);  ///< "eos", "max_new_tokens", "max_context"

struct GenerateResult {
  std::vector<int32_t> prompt_ids;  ///< as run, BOS included
  std::vector<int32_t> new_ids;     ///< generated, the stop token excluded
  std::string text;                 ///< the continuation: decode(prompt + new) after decode(prompt)
  StopReason stop = StopReason::MaxNewTokens;
  double load_seconds = 0;     ///< materialising the layers before the prefill
  double prefill_seconds = 0;  ///< the prompt's forward and the first token's choice
  double decode_seconds = 0;   ///< every later step
  int64_t decode_steps = 0;    ///< one-token forwards run (new tokens after the first)
};

/// Called with each piece of text as soon as it is final (a UTF-8 character split over byte
/// tokens is held back until complete); the pieces concatenate to GenerateResult::text.
using PieceSink = std::function<void(std::string_view piece)>;

/// The tokenizer's EOS and the config's eos_token_id; for a llama2.c model also BOS, which
/// delimits its training sequences (run.c stops on it).
std::vector<int32_t> default_stop_ids(const Model& model);

/// Generates from `prompt` until a stop token, max_new_tokens, or the model's context
/// (prompt + new tokens = max_position_embeddings). Throws calq::Error for a prompt that does
/// not fit the context or is empty with a tokenizer that has no BOS.
GenerateResult generate(Model& model, std::string_view prompt, const GenerateOptions& options,
                        const PieceSink& sink = {});

/// As generate, from token ids (prompt_ids must be non-empty).
GenerateResult generate_ids(Model& model, const std::vector<int32_t>& prompt_ids,
                            const GenerateOptions& options, const PieceSink& sink = {});

}  // namespace calq::core
