// GPT-2 decoder, as transformers GPT2LMHeadModel (docs/formats.md §5.5): learned positions, pre-LN
// blocks, gelu_new MLP, head tied to wte. Conv1D weights ([in, out]) are transposed to [out, in]
// on load and the fused c_attn is split into attn.q / attn.k / attn.v.
#pragma once

#include <memory>

#include "core/model/model.h"
#include "core/model/weight_source.h"

namespace calq::core {

/// Accepts names with the "transformer." prefix (GPT2LMHeadModel) or without (OpenAI-converted
/// checkpoints); their attn.bias / attn.masked_bias mask buffers are ignored.
std::unique_ptr<Model> make_gpt2_model(ModelConfig config,
                                       std::shared_ptr<const WeightSource> weights,
                                       const LoadOptions& options);

/// GPT-2 layer i: q, k, v (stored fused in attn.c_attn: no checkpoint prefix of their own),
/// attn.c_proj, mlp.c_fc, mlp.c_proj under "transformer.h.{i}." (or "h.{i}."), ln_1 and ln_2.
LayerSchema gpt2_layer_schema(const ModelConfig& config, const WeightSource& weights, int64_t i);

}  // namespace calq::core
