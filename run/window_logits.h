// The logits of the windows a perplexity evaluation scored, written for another runtime to
// compare with (tests/interop runs transformers on calq's exports on the same ids). Used by
// `calq eval --logits` and `calq run --logits`.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace calq::core {
class Model;
struct PerplexityResult;
}  // namespace calq::core

namespace calq::run {

/// Forwards the r.windows windows of r.seqlen tokens at the start of `tokens` (the stream
/// evaluate_perplexity scored) one at a time and writes a safetensors file: input_ids int64
/// [windows, seqlen], logits float32 [windows, seqlen, vocab].
void write_window_logits(core::Model& model, const std::vector<int32_t>& tokens,
                         const core::PerplexityResult& r, const std::string& path);

}  // namespace calq::run
