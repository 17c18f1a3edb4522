// read_hf_config: config.json -> ModelConfig for the families calq runs (docs/formats.md §5).
// Accepts the transformers ≥ 5 spelling ("dtype", "rope_parameters") and the older one
// ("torch_dtype", top-level "rope_theta", "rope_scaling"; RoPE in core/model/rope_config.cpp).
// Everything calq cannot run yet (post-LN OPT, GPT-2 attention variants, per-layer RoPE) is
// refused with a sentence that says so.
#include "core/model/model_config.h"

#include <cmath>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/io/json_text.h"
#include "core/io/small_file.h"
#include "core/model/config_fields.h"
#include "core/model/family_configs.h"
#include "core/model/family_table.h"
#include "core/model/rope_config.h"

namespace calq::core {

std::string hf_module_name(const ModelConfig& config, const std::string& source) {
  const std::string wrapped = config.weight_prefix + "model.";
  if (config.weight_prefix.empty() || source.rfind(wrapped, 0) != 0) return source;
  return "model." + config.weight_prefix + source.substr(wrapped.size());
}

const char* family_name(Family family) {
  switch (family) {
    case Family::Llama: return "llama";
    case Family::Gemma: return "gemma";
    case Family::Phi3: return "phi3";
    case Family::Opt: return "opt";
    case Family::Gpt2: return "gpt2";
  }
  return "?";
}
namespace {

using nlohmann::json;

c10::ScalarType parse_dtype(const std::string& path, const ConfigFields& f) {
  // transformers ≥ 5 writes "dtype"; older files "torch_dtype".
  std::optional<std::string> name = f.optional_string("dtype");
  const char* key = "dtype";
  if (!name) {
    name = f.optional_string("torch_dtype");
    key = "torch_dtype";
  }
  if (!name)
    return c10::ScalarType::Float;  // PretrainedConfig's default
  if (*name == "float32" || *name == "float")
    return c10::ScalarType::Float;
  if (*name == "float16" || *name == "half")
    return c10::ScalarType::Half;
  if (*name == "bfloat16")
    return c10::ScalarType::BFloat16;
  fail("{}: field \"{}\" is \"{}\"; expected float32, float16 or bfloat16", path, key, *name);
}

}  // namespace

void parse_rotary_decoder_dims(const std::string& path, const ConfigFields& f, ModelConfig& c) {
  c.vocab_size = f.required_positive("vocab_size");
  c.hidden_size = f.required_positive("hidden_size");
  c.intermediate_size = f.required_positive("intermediate_size");
  c.n_layers = f.required_positive("num_hidden_layers");
  c.n_heads = f.required_positive("num_attention_heads");
  c.n_kv_heads = f.optional_int("num_key_value_heads").value_or(c.n_heads);
  CALQ_CHECK(c.n_kv_heads > 0 && c.n_heads % c.n_kv_heads == 0,
             "{}: num_key_value_heads {} does not divide num_attention_heads {}; expected a "
             "divisor",
             path, c.n_kv_heads, c.n_heads);
  if (f.has("head_dim")) {
    c.head_dim = f.required_positive("head_dim");
  } else {
    CALQ_CHECK(c.hidden_size % c.n_heads == 0,
               "{}: hidden_size {} is not a multiple of num_attention_heads {} and head_dim is "
               "absent; expected head_dim",
               path, c.hidden_size, c.n_heads);
    c.head_dim = c.hidden_size / c.n_heads;
  }
  CALQ_CHECK(c.head_dim % 2 == 0, "{}: head_dim {} is odd; expected an even size for RoPE", path,
             c.head_dim);
  c.max_positions = f.has("max_position_embeddings") ? f.required_positive("max_position_embeddings")
                                                     : 2048;
  c.norm_eps = f.optional_in_range("rms_norm_eps", 1e-6, 0.0, 1.0);  // LlamaConfig's default
}

// Llama, Mistral, Qwen2, Qwen3 (docs/formats.md §5.1–5.3).
void parse_llama_config(const std::string& path, const json& j, const ConfigFields& f,
                        ModelConfig& c) {
  c.family = Family::Llama;
  parse_rotary_decoder_dims(path, f, c);
  c.rope = parse_rope(path, j, c.max_positions);
  if (c.rope.type == RopeType::LongRope) {
    for (const auto* factors : {&c.rope.short_factor, &c.rope.long_factor})
      CALQ_CHECK(int64_t(factors->size()) == c.head_dim / 2,
                 "{}: longrope {} has {} entries; expected head_dim / 2 = {} (one per rotated "
                 "pair)",
                 path, factors == &c.rope.short_factor ? "short_factor" : "long_factor",
                 factors->size(), c.head_dim / 2);
  }
  c.activation = f.optional_string("hidden_act").value_or("silu");
  CALQ_CHECK(c.activation == "silu", "{}: hidden_act \"{}\" is not supported; expected \"silu\"",
             path, c.activation);
  c.tie_word_embeddings = f.optional_bool("tie_word_embeddings", false);

  if (c.model_type == "qwen2" || c.model_type == "qwen3") {
    CALQ_CHECK(!f.optional_bool("use_sliding_window", false),
               "{}: use_sliding_window true is not supported yet for {}; expected false", path,
               c.model_type);
  }
  if (c.model_type == "qwen2") {
    // Qwen2Attention: q/k/v always carry a bias, o_proj never (not a config flag).
    c.attention_bias = true;
    c.o_bias = false;
    c.mlp_bias = false;
  } else if (c.model_type == "qwen3") {
    // Qwen3Attention: attention_bias on q/k/v/o (false in every released model), per-head
    // RMSNorm on q and k before RoPE; Qwen3MLP has no bias.
    c.attention_bias = c.o_bias = f.optional_bool("attention_bias", false);
    c.mlp_bias = false;
    c.qk_norm = true;
  } else {
    c.attention_bias = f.optional_bool("attention_bias", false);
    c.o_bias = c.attention_bias;  // LlamaAttention: attention_bias applies to o_proj too
    c.mlp_bias = f.optional_bool("mlp_bias", false);
  }
  if (c.model_type == "mistral" && f.has("sliding_window")) {
    const int64_t window = f.required_int("sliding_window");
    CALQ_CHECK(window > 0,
               "{}: field \"sliding_window\" is {}; expected a positive integer or null", path,
               window);
    c.sliding_window = window;
  }
}

// OPT, pre-LN variants only (docs/formats.md §5.4).
void parse_opt_config(const std::string& path, const json&, const ConfigFields& f,
                      ModelConfig& c) {
  c.family = Family::Opt;
  c.vocab_size = f.required_positive("vocab_size");
  c.hidden_size = f.required_positive("hidden_size");
  c.intermediate_size = f.required_positive("ffn_dim");
  c.n_layers = f.required_positive("num_hidden_layers");
  c.n_heads = f.required_positive("num_attention_heads");
  c.max_positions = f.required_positive("max_position_embeddings");
  CALQ_CHECK(c.hidden_size % c.n_heads == 0,
             "{}: hidden_size {} is not a multiple of num_attention_heads {}; expected a multiple",
             path, c.hidden_size, c.n_heads);
  c.n_kv_heads = c.n_heads;
  c.head_dim = c.hidden_size / c.n_heads;
  c.norm_eps = 1e-5;  // OPT's nn.LayerNorm default, not a config field
  CALQ_CHECK(f.optional_bool("do_layer_norm_before", true),
             "{}: do_layer_norm_before false (post-LN OPT, e.g. opt-350m) is not supported; "
             "expected true",
             path);
  const int64_t proj_dim = f.optional_int("word_embed_proj_dim").value_or(c.hidden_size);
  CALQ_CHECK(proj_dim == c.hidden_size,
             "{}: word_embed_proj_dim {} differs from hidden_size {} (project_in/project_out, "
             "e.g. opt-350m) which is not supported; expected them equal",
             path, proj_dim, c.hidden_size);
  CALQ_CHECK(!f.optional_bool("_remove_final_layer_norm", false),
             "{}: _remove_final_layer_norm true is not supported; expected false", path);
  CALQ_CHECK(f.optional_bool("layer_norm_elementwise_affine", true),
             "{}: layer_norm_elementwise_affine false is not supported; expected true", path);
  c.activation = f.optional_string("activation_function").value_or("relu");
  CALQ_CHECK(c.activation == "relu",
             "{}: activation_function \"{}\" is not supported for opt; expected \"relu\"", path,
             c.activation);
  const bool bias = f.optional_bool("enable_bias", true);
  c.attention_bias = c.o_bias = c.mlp_bias = bias;
  c.tie_word_embeddings = f.optional_bool("tie_word_embeddings", true);
}

// GPT-2 (docs/formats.md §5.5).
void parse_gpt2_config(const std::string& path, const json&, const ConfigFields& f,
                       ModelConfig& c) {
  c.family = Family::Gpt2;
  c.vocab_size = f.required_positive("vocab_size");
  c.hidden_size = f.required_positive("n_embd");
  c.n_heads = f.required_positive("n_head");
  c.n_layers = f.required_positive("n_layer");
  c.max_positions = f.required_positive("n_positions");
  CALQ_CHECK(c.hidden_size % c.n_heads == 0,
             "{}: n_embd {} is not a multiple of n_head {}; expected a multiple", path,
             c.hidden_size, c.n_heads);
  c.n_kv_heads = c.n_heads;
  c.head_dim = c.hidden_size / c.n_heads;
  c.intermediate_size = f.optional_int("n_inner").value_or(4 * c.hidden_size);  // null -> 4E
  CALQ_CHECK(c.intermediate_size > 0, "{}: field \"n_inner\" is {}; expected a positive integer",
             path, c.intermediate_size);
  c.norm_eps = f.optional_in_range("layer_norm_epsilon", 1e-5, 0.0, 1.0);
  c.activation = f.optional_string("activation_function").value_or("gelu_new");
  CALQ_CHECK(
      c.activation == "gelu_new" || c.activation == "gelu_pytorch_tanh" || c.activation == "gelu",
      "{}: activation_function \"{}\" is not supported for gpt2; expected \"gelu_new\"", path,
      c.activation);
  if (c.activation == "gelu_pytorch_tanh")
    c.activation = "gelu_new";  // the same function
  CALQ_CHECK(f.optional_bool("scale_attn_weights", true),
             "{}: scale_attn_weights false is not supported; expected true", path);
  CALQ_CHECK(!f.optional_bool("scale_attn_by_inverse_layer_idx", false),
             "{}: scale_attn_by_inverse_layer_idx true is not supported; expected false", path);
  CALQ_CHECK(!f.optional_bool("reorder_and_upcast_attn", false),
             "{}: reorder_and_upcast_attn true is not supported; expected false", path);
  c.attention_bias = c.o_bias = c.mlp_bias = true;  // Conv1D always has a bias
  c.tie_word_embeddings = f.optional_bool("tie_word_embeddings", true);
}

ModelConfig read_hf_config(const std::string& config_json_path) {
  const std::string& path = config_json_path;
  return parse_hf_config(read_small_file(path, "an HF config.json"), path);
}

ModelConfig parse_hf_config(std::string_view text, const std::string& path) {
  JsonReadOptions read;
  read.what = "config";
  read.expected = "an HF config.json";
  const json j = parse_json_bounded(text, path, read);
  CALQ_CHECK(j.is_object(), "{}: top level is not an object; expected an HF config.json", path);
  const ConfigFields f(path, j);

  ModelConfig c;
  c.source = path;
  const std::optional<std::string> model_type = f.optional_string("model_type");
  CALQ_CHECK(model_type.has_value(),
             "{}: missing field \"model_type\"; expected a string ({})", path,
             family_type_list());
  c.model_type = *model_type;
  const FamilyRow* family = find_family(c.model_type);
  CALQ_CHECK(family != nullptr, "{}: model_type \"{}\" is not supported; expected one of {}", path,
             c.model_type, family_type_list());
  family->parse(path, j, f, c);
  c.storage_dtype = parse_dtype(path, f);
  c.bos_token_id = f.optional_token_id("bos_token_id");
  c.eos_token_id = f.optional_token_id("eos_token_id");
  return c;
}

}  // namespace calq::core
