// Phi-3 / Phi-3.5 / Phi-4 config.json (transformers' Phi3Config, model_type "phi3"): absent fields
// take that class's defaults, as transformers does when it loads the file.
#include <cmath>
#include <string>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/model/config_fields.h"
#include "core/model/family_configs.h"
#include "core/model/rope_config.h"

namespace calq::core {
namespace {

using nlohmann::json;

// models/phi3/configuration_phi3.py: original_max_position_embeddings defaults to 4096.
constexpr int64_t kPhi3OriginalContext = 4096;

// The RoPE part of config.json as Phi3Config reads it, before the shared parse_rope:
//   - convert_rope_params_to_dict renames the old rope types "su" and "yarn" to "longrope";
//   - standardize_rope_params (modeling_rope_utils.py) copies the config attribute
//     original_max_position_embeddings into the rope dictionary whenever the class has one, and
//     Phi3Config always has one (default 4096): the top-level value, or 4096, is what longrope
//     sees, never a value inside the dictionary.
json phi3_rope_view(const json& j) {
  json view = j;
  for (const char* key : {"rope_scaling", "rope_parameters"}) {
    if (!view.contains(key) || !view[key].is_object()) continue;
    json& dict = view[key];
    const char* type_key = dict.contains("rope_type") ? "rope_type" : "type";
    if (dict.contains(type_key) && (dict[type_key] == "su" || dict[type_key] == "yarn"))
      dict["rope_type"] = "longrope";
    break;  // parse_rope reads the first present of the two, as transformers does
  }
  if (!view.contains("original_max_position_embeddings") ||
      view["original_max_position_embeddings"].is_null())
    view["original_max_position_embeddings"] = kPhi3OriginalContext;
  return view;
}

}  // namespace

void parse_phi3_config(const std::string& path, const json& j, const ConfigFields& f,
                       ModelConfig& c) {
  c.family = Family::Phi3;
  parse_rotary_decoder_dims(path, f, c);
  // Phi3Config's defaults where the shared reader assumes Llama's.
  c.max_positions =
      f.has("max_position_embeddings") ? f.required_positive("max_position_embeddings") : 4096;
  c.norm_eps = f.optional_in_range("rms_norm_eps", 1e-5, 0.0, 1.0);
  c.activation = f.optional_string("hidden_act").value_or("silu");
  CALQ_CHECK(c.activation == "silu", "{}: hidden_act \"{}\" is not supported; expected \"silu\"",
             path, c.activation);
  c.tie_word_embeddings = f.optional_bool("tie_word_embeddings", false);
  // Phi3Attention and Phi3MLP have no biases (not a config flag).
  c.attention_bias = c.o_bias = c.mlp_bias = false;
  if (f.has("sliding_window")) {
    const int64_t window = f.required_int("sliding_window");
    CALQ_CHECK(window > 0,
               "{}: field \"sliding_window\" is {}; expected a positive integer or null", path,
               window);
    c.sliding_window = window;
  }

  c.rope = parse_rope(path, phi3_rope_view(j), c.max_positions, 10000.0, /*partial_rotary=*/true);
  // Phi3Config.validate_rope: only the default and longrope types.
  CALQ_CHECK(c.rope.type == RopeType::Default || c.rope.type == RopeType::LongRope,
             "{}: rope_type \"{}\" is not supported for phi3; expected \"default\" or "
             "\"longrope\" (as Phi3Config.validate_rope)",
             path, rope_type_name(c.rope.type));
  const int64_t rotary_dim = c.rope.rotary_dim(c.head_dim);
  CALQ_CHECK(rotary_dim >= 2 && rotary_dim % 2 == 0,
             "{}: partial_rotary_factor {} of head_dim {} rotates {} channels; expected an even "
             "number of at least 2",
             path, c.rope.partial_rotary_factor, c.head_dim, rotary_dim);
  if (c.rope.type == RopeType::LongRope) {
    for (const auto* factors : {&c.rope.short_factor, &c.rope.long_factor})
      CALQ_CHECK(int64_t(factors->size()) == rotary_dim / 2,
                 "{}: longrope {} has {} entries; expected rotary_dim / 2 = {} (one per rotated "
                 "pair)",
                 path, factors == &c.rope.short_factor ? "short_factor" : "long_factor",
                 factors->size(), rotary_dim / 2);
  }
}

}  // namespace calq::core
