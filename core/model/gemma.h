// Gemma 2 and Gemma 3 text decoders (transformers' Gemma2ForCausalLM / Gemma3ForCausalLM):
// (1 + w) RMSNorms, four per layer, embeddings scaled by sqrt(hidden), GeGLU with tanh GELU,
// query_pre_attn_scalar, alternating windowed and global layers, Gemma 2's attention and final
// logit soft-capping, Gemma 3's q/k norms and local RoPE base.
#pragma once

#include <memory>

#include "core/model/model.h"
#include "core/model/weight_source.h"

namespace calq::core {

std::unique_ptr<Model> make_gemma_model(ModelConfig config,
                                        std::shared_ptr<const WeightSource> weights,
                                        const LoadOptions& options);

/// Gemma layer i: the Llama linears, norms norm.attn / norm.post_attn / norm.mlp / norm.post_mlp
/// (and norm.q / norm.k on Gemma 3), every one of the RmsOnePlus form.
LayerSchema gemma_layer_schema(const ModelConfig& config, int64_t i);

}  // namespace calq::core
