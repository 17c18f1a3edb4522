// karpathy/llama2.c legacy ("v0") .bin checkpoints (docs/formats.md §5.7), presented as an HF Llama
// so the one Llama implementation runs them: a WeightSource over the .bin under HF tensor names,
// with wq / wk rows permuted from Meta's interleaved RoPE layout to HF's rotate-half (§5.6).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <ATen/core/Tensor.h>

#include "core/model/model_config.h"
#include "core/model/weight_source.h"

namespace calq::core {

/// The header (7 int32: dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
/// negative vocab = unshared classifier) as a ModelConfig with model_type "llama2c". Checks the
/// values and that the file size matches the header exactly; errors name the file.
ModelConfig read_llama2c_config(const std::string& path);

/// The .bin's weights under HF Llama names (model.embed_tokens.weight, model.layers.{i}....,
/// model.norm.weight, lm_head.weight when unshared), read lazily from the file.
std::shared_ptr<WeightSource> open_llama2c_source(const std::string& path,
                                                  const ModelConfig& config);

/// Meta -> HF row order of a q or k projection w [heads · hd, in]: new row h·hd + t·hd/2 + j
/// takes old row h·hd + 2j + t (llama2.c export.py permute_reverse's inverse). Also works on a
/// bias [heads · hd].
at::Tensor permute_meta_to_hf(const at::Tensor& w, int64_t heads);

}  // namespace calq::core
