// parse_rope: which dictionary holds the RoPE parameters and what each type needs, as
// transformers' PreTrainedConfig reads them (modeling_rope_utils.py: convert_rope_params_to_dict,
// standardize_rope_params and the _validate_*_rope_parameters checks):
//   - "rope_scaling" (transformers 4, Llama 3.1's own config.json) wins over "rope_parameters"
//     (transformers 5); "type" is the old spelling of "rope_type"; null or {} is the default rope;
//   - rope_theta comes from the dictionary, else the top level, else 10000;
//   - for llama3, yarn and longrope a top-level original_max_position_embeddings (Phi-3) wins
//     over the dictionary's, and max_position_embeddings stands in when both are absent.
#include "core/model/rope_config.h"

#include <cmath>
#include <string>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/io/json_text.h"
#include "core/model/config_fields.h"

namespace calq::core {
namespace {

using nlohmann::json;

RopeType parse_type(const ConfigFields& f, const std::string& prefix) {
  std::optional<std::string> name = f.optional_string("rope_type");
  if (!name) name = f.optional_string("type");
  const std::string type = name.value_or("default");
  for (RopeType t : {RopeType::Default, RopeType::Linear, RopeType::Dynamic, RopeType::Yarn,
                     RopeType::Llama3, RopeType::LongRope})
    if (type == rope_type_name(t)) return t;
  fail("{}: field \"{}rope_type\" is \"{}\"; expected default, linear, dynamic, yarn, llama3 or "
       "longrope",
       f.path(), prefix, type);
}

// A scaling factor: transformers requires a float >= 1 for every type that takes one.
double factor_field(const ConfigFields& f, const char* key, const std::string& prefix) {
  CALQ_CHECK(f.has(key), "{}: missing field \"{}{}\"; expected a number >= 1", f.path(), prefix, key);
  const double v = f.optional_double(key, 1.0);
  CALQ_CHECK(std::isfinite(v) && v >= 1.0 && v <= 1e6,
             "{}: field \"{}{}\" is {}; expected a finite number >= 1 and <= 1e6", f.path(), prefix,
             key, v);
  return v;
}

}  // namespace

RopeSpec parse_rope(const std::string& path, const json& config, int64_t max_positions,
                    double default_theta, bool partial_rotary) {
  const ConfigFields top(path, config);
  static const json kEmpty = json::object();
  const char* key = top.has("rope_scaling") ? "rope_scaling"
                    : top.has("rope_parameters") ? "rope_parameters"
                                                 : nullptr;
  const json& dict = key ? config.at(key) : kEmpty;
  const std::string prefix = key ? std::string(key) + "." : "";
  CALQ_CHECK(dict.is_object(), "{}: field \"{}\" is {}; expected an object or null", path,
             key ? key : "", quote_json(dict));
  for (const auto& [name, value] : dict.items())
    CALQ_CHECK(!value.is_object(),
               "{}: field \"{}{}\" is an object: RoPE parameters per layer type are not supported "
               "for this family; expected one set of parameters",
               path, prefix, name);
  const ConfigFields f(path, dict, prefix);

  RopeSpec spec;
  spec.type = parse_type(f, prefix);
  spec.max_positions = max_positions;
  // Both range-checked when present (a top-level 0 beside rope_parameters is a broken file even
  // though transformers would not read it); the dictionary's wins, as in transformers.
  const double top_theta = top.optional_in_range("rope_theta", default_theta, 0.0, 1e12);
  spec.theta = f.has("rope_theta") ? f.optional_in_range("rope_theta", default_theta, 0.0, 1e12)
                                   : top_theta;
  const double partial = f.has("partial_rotary_factor")
                             ? f.optional_double("partial_rotary_factor", 1.0)
                             : top.optional_double("partial_rotary_factor", 1.0);
  if (partial_rotary) {
    CALQ_CHECK(std::isfinite(partial) && partial > 0.0 && partial <= 1.0,
               "{}: field \"partial_rotary_factor\" is {}; expected a number in (0, 1]", path,
               partial);
    spec.partial_rotary_factor = partial;
  } else {
    CALQ_CHECK(partial == 1.0,
               "{}: partial_rotary_factor {} is not supported yet for this family; expected 1.0 "
               "(every channel rotated)",
               path, partial);
  }

  if (spec.type == RopeType::Llama3 || spec.type == RopeType::Yarn ||
      spec.type == RopeType::LongRope) {
    spec.original_max_positions =
        top.has("original_max_position_embeddings") ? top.required_positive("original_max_position_embeddings")
        : f.has("original_max_position_embeddings") ? f.required_positive("original_max_position_embeddings")
                                                    : max_positions;
  }
  switch (spec.type) {
    case RopeType::Default: break;
    case RopeType::Linear:
    case RopeType::Dynamic: spec.factor = factor_field(f, "factor", prefix); break;
    case RopeType::Llama3:
      spec.factor = factor_field(f, "factor", prefix);
      spec.low_freq_factor = f.optional_in_range("low_freq_factor", 1.0, 0.0, 1e6);
      spec.high_freq_factor = f.optional_in_range("high_freq_factor", 4.0, 0.0, 1e6);
      CALQ_CHECK(f.has("low_freq_factor") && f.has("high_freq_factor"),
                 "{}: rope_type llama3 needs \"{}low_freq_factor\" and \"{}high_freq_factor\"; "
                 "expected both",
                 path, prefix, prefix);
      CALQ_CHECK(spec.high_freq_factor > spec.low_freq_factor,
                 "{}: field \"{}high_freq_factor\" is {} and low_freq_factor {}; expected "
                 "high_freq_factor > low_freq_factor",
                 path, prefix, spec.high_freq_factor, spec.low_freq_factor);
      break;
    case RopeType::Yarn:
      // _compute_yarn_parameters: a missing factor is the ratio of the two contexts.
      spec.factor = f.has("factor") ? factor_field(f, "factor", prefix)
                                    : double(max_positions) / double(spec.original_max_positions);
      if (f.has("attention_factor"))
        spec.attention_factor = f.optional_in_range("attention_factor", 1.0, 0.0, 1e6);
      if (f.has("mscale")) spec.mscale = f.optional_in_range("mscale", 1.0, 0.0, 1e6);
      if (f.has("mscale_all_dim"))
        spec.mscale_all_dim = f.optional_in_range("mscale_all_dim", 1.0, 0.0, 1e6);
      // `get(...) or 32`: an explicit 0 is the default too.
      spec.beta_fast = f.optional_double("beta_fast", 0.0);
      spec.beta_slow = f.optional_double("beta_slow", 0.0);
      if (spec.beta_fast == 0.0) spec.beta_fast = 32.0;
      if (spec.beta_slow == 0.0) spec.beta_slow = 1.0;
      CALQ_CHECK(std::isfinite(spec.beta_fast) && std::isfinite(spec.beta_slow) &&
                     spec.beta_fast > 0 && spec.beta_slow > 0 && spec.beta_slow <= spec.beta_fast,
                 "{}: yarn beta_fast {} and beta_slow {}; expected 0 < beta_slow <= beta_fast",
                 path, spec.beta_fast, spec.beta_slow);
      spec.truncate = f.optional_bool("truncate", true);
      break;
    case RopeType::LongRope:
      spec.short_factor = f.required_number_list("short_factor");
      spec.long_factor = f.required_number_list("long_factor");
      // _compute_longrope_parameters: factor, when absent, is the ratio of the two contexts.
      spec.factor = f.has("factor") ? f.optional_in_range("factor", 1.0, 0.0, 1e6)
                                    : double(max_positions) / double(spec.original_max_positions);
      if (f.has("attention_factor"))
        spec.attention_factor = f.optional_in_range("attention_factor", 1.0, 0.0, 1e6);
      break;
  }
  return spec;
}

}  // namespace calq::core
