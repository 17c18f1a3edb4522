// The Llama-family decoder (Llama, Mistral, Qwen2, and llama2.c models presented under HF
// names): RMSNorm, rotate-half RoPE, grouped-query attention, SiLU-gated MLP, as transformers'
// LlamaForCausalLM / MistralForCausalLM / Qwen2ForCausalLM (docs/formats.md §5.1–5.3).
#pragma once

#include <memory>

#include <ATen/core/Tensor.h>

#include "core/model/model.h"
#include "core/model/weight_source.h"

namespace calq::core {

/// Reads HF tensor names (model.embed_tokens.weight, model.layers.{i}.self_attn.q_proj.weight,
/// ...) from `weights`; the head is lm_head.weight unless config.tie_word_embeddings.
std::unique_ptr<Model> make_llama_model(ModelConfig config,
                                        std::shared_ptr<const WeightSource> weights,
                                        const LoadOptions& options);

/// Llama-family layer i: q,k,v,o / gate,up,down under model.layers.{i}., two RMSNorms, and the
/// AWQ/SmoothQuant pairs of docs/algorithms.md §4.1.
LayerSchema llama_layer_schema(const ModelConfig& config, int64_t i);

/// transformers LlamaRMSNorm: x [.., H] -> weight ⊙ (x / sqrt(mean(x²) + eps)), normalised in
/// float32 and cast back to x's dtype before the multiply.
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps);

}  // namespace calq::core
