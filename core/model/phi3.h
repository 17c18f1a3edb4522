// The Phi-3 family (Phi-3, Phi-3.5, Phi-4, Phi-4-mini: transformers' Phi3ForCausalLM, model_type
// "phi3"): the Llama block with q, k, v stored as one qkv_proj and gate, up as one gate_up_proj,
// longrope, partial rotary embedding and an optional sliding window.
#pragma once

#include <memory>

#include "core/model/model.h"
#include "core/model/weight_source.h"

namespace calq::core {

std::unique_ptr<Model> make_phi3_model(ModelConfig config,
                                       std::shared_ptr<const WeightSource> weights,
                                       const LoadOptions& options);

/// Phi-3 layer i: attn.qkv (self_attn.qkv_proj, rows q|k|v), attn.o, mlp.gate_up
/// (mlp.gate_up_proj, rows gate|up), mlp.down, quantized as stored; norms norm.attn / norm.mlp;
/// scaling pairs whose linear prev_ops name the slice of rows that feeds the pair.
LayerSchema phi3_layer_schema(const ModelConfig& config, int64_t i);

}  // namespace calq::core
