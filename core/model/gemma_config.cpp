// Gemma 2 and Gemma 3 text config.json (transformers' Gemma2Config / Gemma3TextConfig): absent
// fields take those classes' defaults, as transformers does when it loads the file.
#include <cmath>
#include <string>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/io/json_text.h"
#include "core/model/config_fields.h"
#include "core/model/family_configs.h"
#include "core/model/rope_config.h"

namespace calq::core {
namespace {

using nlohmann::json;

// cap·tanh(x / cap): an explicit null is no capping (0), an absent field the class default.
double softcap(const ConfigFields& f, const char* key, double fallback) {
  if (f.is_null(key)) return 0.0;
  if (!f.has(key)) return fallback;
  return f.optional_in_range(key, fallback, 0.0, 1e6);
}

}  // namespace

void parse_gemma_config(const std::string& path, const json& j, const ConfigFields& f,
                        ModelConfig& c) {
  const bool gemma3 = c.model_type == "gemma3_text" || c.model_type == "gemma3";
  c.family = Family::Gemma;
  CALQ_CHECK(f.has("head_dim"), "{}: missing field \"head_dim\"; expected an integer (Gemma "
             "configs carry it)", path);
  parse_rotary_decoder_dims(path, f, c);
  c.activation = f.optional_string("hidden_activation").value_or("gelu_pytorch_tanh");
  CALQ_CHECK(c.activation == "gelu_pytorch_tanh",
             "{}: hidden_activation \"{}\" is not supported; expected \"gelu_pytorch_tanh\"", path,
             c.activation);
  c.tie_word_embeddings = f.optional_bool("tie_word_embeddings", true);
  c.attention_bias = c.o_bias = f.optional_bool("attention_bias", false);
  c.mlp_bias = false;
  c.qk_norm = gemma3;
  c.scale_embeddings = true;
  c.query_pre_attn_scalar = f.optional_in_range("query_pre_attn_scalar", 256.0, 0.0, 1e9);
  c.attn_logit_softcap = softcap(f, "attn_logit_softcapping", gemma3 ? 0.0 : 50.0);
  c.final_logit_softcap = softcap(f, "final_logit_softcapping", gemma3 ? 0.0 : 30.0);
  CALQ_CHECK(!f.optional_bool("use_bidirectional_attention", false),
             "{}: use_bidirectional_attention true is not supported; expected causal attention",
             path);
  c.sliding_window = f.has("sliding_window") ? f.required_positive("sliding_window") : 4096;

  // Which layers are windowed: layer_types, else the classes' patterns (Gemma 2 alternates
  // starting with a windowed layer; Gemma 3 has sliding_window_pattern - 1 windowed, one full).
  c.sliding_layers.assign(static_cast<size_t>(c.n_layers), false);
  if (f.has("layer_types")) {
    const json& types = f.at("layer_types");
    CALQ_CHECK(types.is_array() && int64_t(types.size()) == c.n_layers,
               "{}: field \"layer_types\" is {}; expected a list of {} entries", path,
               quote_json(types), c.n_layers);
    for (int64_t i = 0; i < c.n_layers; ++i) {
      const json& t = types[size_t(i)];
      CALQ_CHECK(t == "sliding_attention" || t == "full_attention",
                 "{}: layer_types[{}] is {}; expected \"sliding_attention\" or \"full_attention\"",
                 path, i, quote_json(t));
      c.sliding_layers[size_t(i)] = t == "sliding_attention";
    }
  } else {
    const int64_t pattern = gemma3 ? (f.optional_int("sliding_window_pattern").value_or(6)) : 2;
    CALQ_CHECK(pattern > 0, "{}: field \"sliding_window_pattern\" is {}; expected >= 1", path,
               pattern);
    for (int64_t i = 0; i < c.n_layers; ++i) c.sliding_layers[size_t(i)] = (i + 1) % pattern != 0;
  }

  // RoPE: Gemma 2 one set; Gemma 3 one per layer type (transformers 5 nests rope_parameters by
  // layer type; older files give rope_theta + rope_scaling for full layers, rope_local_base_freq
  // for windowed ones).
  const double default_theta = gemma3 ? 1e6 : 10000.0;
  const json* nested = f.has("rope_parameters") && f.at("rope_parameters").is_object() &&
                               f.at("rope_parameters").contains("full_attention")
                           ? &f.at("rope_parameters")
                           : nullptr;
  if (!gemma3 || !nested) {
    c.rope = parse_rope(path, j, c.max_positions, default_theta);
    if (gemma3) {
      c.rope_local = RopeSpec{};
      c.rope_local->max_positions = c.max_positions;
      c.rope_local->theta = f.optional_in_range("rope_local_base_freq", 10000.0, 0.0, 1e12);
    }
  } else {
    for (const char* type : {"full_attention", "sliding_attention"}) {
      CALQ_CHECK(nested->contains(type) && nested->at(type).is_object(),
                 "{}: field \"rope_parameters.{}\" is missing; expected an object", path, type);
      json one = {{"rope_parameters", nested->at(type)}};
      const RopeSpec spec = parse_rope(path, one, c.max_positions, default_theta);
      if (std::string(type) == "full_attention") c.rope = spec;
      else c.rope_local = spec;
    }
  }
}

// A multimodal Gemma 3 checkpoint (model_type gemma3, Gemma3ForConditionalGeneration): the
// language model's config is text_config, its tensors live under language_model.; calq runs and
// quantizes the language model, and exports carry the vision tower and projector over as they
// are. Fields the file leaves out take Gemma3TextConfig's defaults, as transformers' do.
void parse_gemma3_multimodal_config(const std::string& path, const json& j, const ConfigFields& f,
                                    ModelConfig& c) {
  CALQ_CHECK(f.has("text_config") && f.at("text_config").is_object(),
             "{}: field \"text_config\" is missing; expected the language model's config (a "
             "multimodal gemma3 checkpoint)", path);
  json text = f.at("text_config");
  // transformers' configuration_gemma3.py Gemma3TextConfig defaults (the 4B model's shape).
  const json defaults = {{"vocab_size", 262208},          {"hidden_size", 2304},
                         {"intermediate_size", 9216},     {"num_hidden_layers", 26},
                         {"num_attention_heads", 8},      {"num_key_value_heads", 4},
                         {"head_dim", 256},               {"max_position_embeddings", 131072},
                         {"rms_norm_eps", 1e-6},          {"query_pre_attn_scalar", 256},
                         {"sliding_window", 4096}};
  for (const auto& [key, value] : defaults.items())
    if (!text.contains(key)) text[key] = value;
  const ConfigFields tf(path, text, "text_config.");
  CALQ_CHECK(!tf.optional_bool("use_bidirectional_attention", false),
             "{}: text_config.use_bidirectional_attention true is not supported; expected false "
             "(a causal language model)", path);
  parse_gemma_config(path, text, tf, c);
  c.tie_word_embeddings = f.optional_bool("tie_word_embeddings", c.tie_word_embeddings);
  c.weight_prefix = "language_model.";
  (void)j;
}

}  // namespace calq::core
