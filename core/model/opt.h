// OPT decoder (pre-LN variants: opt-125m, 1.3b, 2.7b, ...), as transformers OPTForCausalLM
// (docs/formats.md §5.4): learned positions with offset 2, queries scaled after q_proj, ReLU FFN
// exposed as mlp.fc1 / mlp.fc2, LayerNorm eps 1e-5, head tied to the token embedding.
#pragma once

#include <memory>

#include "core/model/model.h"
#include "core/model/weight_source.h"

namespace calq::core {

/// Accepts tensor names with the "model.decoder." prefix (OPTForCausalLM) or "decoder."
/// (OPTModel checkpoints such as facebook/opt-125m).
std::unique_ptr<Model> make_opt_model(ModelConfig config,
                                      std::shared_ptr<const WeightSource> weights,
                                      const LoadOptions& options);

/// OPT layer i: q, k, v, out_proj, fc1, fc2 under "model.decoder.layers.{i}." (or "decoder."
/// when `weights` holds OPTModel names), two LayerNorms; the scaling pairs of
/// docs/algorithms.md §4.1.
LayerSchema opt_layer_schema(const ModelConfig& config, const WeightSource& weights, int64_t i);

}  // namespace calq::core
