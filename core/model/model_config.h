// The architecture facts calq needs from an HF config.json (or a llama2.c header), normalised
// across families and across transformers 4/5 spellings (rope_theta vs rope_parameters,
// torch_dtype vs dtype). Missing required fields are errors naming the file and the field.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <c10/core/ScalarType.h>

#include "core/model/moe_config.h"
#include "core/model/rope_spec.h"

namespace calq::core {

enum class Family { Llama, Gemma, Phi3, Opt, Gpt2 };  // Llama covers llama, mistral, qwen2/3, llama2.c

/// "llama", "opt", "gpt2" (report.json, calq inspect).
const char* family_name(Family family);


struct ModelConfig {
  std::string source;      ///< the file the facts came from (for error messages)
  std::string model_type;  ///< a family_table.cpp row, or "llama2c"
  Family family = Family::Llama;
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;  ///< OPT ffn_dim, GPT-2 n_inner (4·E when null)
  int64_t n_layers = 0;
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t max_positions = 0;
  double norm_eps = 1e-5;       ///< rms_norm_eps or layer_norm_epsilon
  RopeSpec rope;                ///< Llama family only (rope_type, theta, scaling)
  bool attention_bias = false;  ///< q/k/v(/o) biases (Qwen2: q/k/v always)
  bool o_bias = false;
  bool mlp_bias = false;
  bool qk_norm = false;          ///< per-head RMSNorm on q and k before RoPE (Qwen3)
  bool tie_word_embeddings = false;
  std::string activation = "silu";  ///< silu | relu | gelu_new | gelu
  std::optional<int64_t> sliding_window;  ///< window of the windowed layers (all, or sliding_layers)
  std::vector<bool> sliding_layers;  ///< per layer: windowed (Gemma's layer_types); empty: all
  std::optional<RopeSpec> rope_local;  ///< RoPE of the windowed layers when it differs (Gemma 3)
  double query_pre_attn_scalar = 0;  ///< attention scale is its ^-0.5 (Gemma); 0: head_dim
  double attn_logit_softcap = 0;     ///< scores -> cap·tanh(scores / cap) (Gemma 2); 0: none
  double final_logit_softcap = 0;    ///< logits -> cap·tanh(logits / cap) (Gemma 2); 0: none
  bool scale_embeddings = false;     ///< embeddings × sqrt(hidden_size) (Gemma)
  MoeConfig moe;                     ///< experts (Mixtral, Qwen2-MoE, Qwen3-MoE); none: dense
  /// Before every tensor name of the language model: "language_model." inside a multimodal
  /// Gemma 3 checkpoint (its vision tower and projector are carried over as they are).
  std::string weight_prefix;
  std::optional<int32_t> bos_token_id;
  std::optional<int32_t> eos_token_id;
  c10::ScalarType storage_dtype = c10::ScalarType::Float;  ///< dtype the checkpoint declares
};

/// The module path transformers 5 builds for a checkpoint tensor prefix (what PEFT's
/// target_modules and optimum's block_name_to_quantize name): inside a wrapped checkpoint the
/// checkpoint's <weight_prefix>model.X is transformers' model.<weight_prefix>X
/// (Gemma3ForConditionalGeneration: language_model.model.layers -> model.language_model.layers);
/// every other name is the same in both.
std::string hf_module_name(const ModelConfig& config, const std::string& source);

/// Parses `<dir>/config.json`. Throws calq::Error naming the file and the missing/bad field.
ModelConfig read_hf_config(const std::string& config_json_path);

/// The same from config.json text in memory; `path` names it in errors (the fuzz target's entry).
ModelConfig parse_hf_config(std::string_view text, const std::string& path);

}  // namespace calq::core
