// Mixture-of-experts checkpoints store experts two ways: one tensor per expert and linear
// (`<block>.experts.<e>.w1.weight`: older checkpoints, and what transformers 5 writes back on
// save_pretrained), or fused 3-D tensors (`<block>.experts.gate_up_proj` [E, 2I, H] with gate
// rows first, `<block>.experts.down_proj` [E, H, I]: transformers 5's in-memory layout, which
// some checkpoints store as is). calq's schema names the per-expert tensors; this presents a
// fused checkpoint under those names, so the model, the exporters (which write per-expert
// tensors, the layout vLLM's and transformers' loaders read) and `calq inspect` see one layout.
#pragma once

#include <memory>

#include "core/model/model_config.h"
#include "core/model/weight_source.h"

namespace calq::core {

/// `base` itself when it holds no fused expert tensors (or the model has no experts); else a
/// source that answers the per-expert names by slicing the fused tensors and hides them.
std::shared_ptr<WeightSource> split_fused_experts(std::shared_ptr<WeightSource> base,
                                                  const ModelConfig& config);

}  // namespace calq::core
