// The families `calq synth` writes, one row each: the config.json fields that make transformers
// and calq load the family, and the family's own layer schema, from which synth takes every
// tensor name, shape and norm form (it keeps no list of its own). A new family is one row in
// synth_families.cpp (docs/howto-add-family.md §1).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json_fwd.hpp>

#include "core/model/layer_schema.h"
#include "core/model/model_config.h"

namespace calq::cli {

/// The shape `calq synth` was asked for, defaults and preset applied.
struct SynthShape {
  int64_t hidden = 0;
  int64_t intermediate = 0;
  int64_t layers = 0;
  int64_t heads = 0;
  int64_t kv_heads = 0;
  int64_t head_dim = 0;  ///< hidden / heads unless the family or preset sets it
  int64_t vocab = 0;
  bool tied = false;  ///< tie_word_embeddings: no lm_head.weight
  std::string dtype;  ///< float16 | bfloat16 | float32 (config.json torch_dtype)
  int64_t experts = 0;              ///< MoE families: routed experts per sparse layer
  int64_t top_k = 0;                ///< experts per token
  int64_t expert_intermediate = 0;  ///< each expert's intermediate size
};

struct SynthFamily {
  const char* name;  ///< --family
  int64_t vocab;     ///< --vocab when not given
  bool tied;         ///< tie_word_embeddings when neither --tied nor --untied is given
  bool moe;          ///< has experts: --experts / --top-k apply (and are required)
  /// config.json for `shape`, with the family's real fields (model_type, rope, norms, windows).
  void (*config)(const SynthShape& shape, nlohmann::json& out);
  /// The family's layer schema, the same function its model loads layers with.
  core::LayerSchema (*schema)(const core::ModelConfig& config, int64_t layer);
};

/// The row named `name`, or nullptr.
const SynthFamily* find_synth_family(std::string_view name);

/// "llama, llama3, ..." for messages and --help.
std::string synth_family_list();

}  // namespace calq::cli
