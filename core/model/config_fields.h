// Typed, range-checked access to the fields of an HF config.json object: every message names the
// file and the field (docs/robustness.md "Config ranges"). For the parsers in core/model only.
#pragma once

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/io/json_text.h"

namespace calq::core {

// Typed access to one config.json object; every message names the file and the field.
class ConfigFields {
 public:
  /// `prefix` names a nested object in messages ("rope_parameters." for its fields).
  ConfigFields(const std::string& path, const nlohmann::json& object, std::string prefix = "")
      : path_(path), j_(object), prefix_(std::move(prefix)) {}

  const std::string& path() const { return path_; }
  bool is_null(const char* key) const { return j_.contains(key) && j_.at(key).is_null(); }
  bool has(const char* key) const { return j_.contains(key) && !j_.at(key).is_null(); }
  const nlohmann::json& at(const char* key) const { return j_.at(key); }

  int64_t required_int(const char* key) const {
    if (!has(key))
      fail("{}: missing field \"{}\"; expected an integer", path_, name(key));
    return int_value(key);
  }
  int64_t required_positive(const char* key) const {
    const int64_t v = required_int(key);
    CALQ_CHECK(v > 0, "{}: field \"{}\" is {}; expected a positive integer", path_, name(key), v);
    return v;
  }
  std::optional<int64_t> optional_int(const char* key) const {
    if (!has(key))
      return std::nullopt;
    return int_value(key);
  }
  double optional_double(const char* key, double fallback) const {
    if (!has(key))
      return fallback;
    const nlohmann::json& v = j_.at(key);
    CALQ_CHECK(v.is_number(), "{}: field \"{}\" is {}; expected a number", path_, name(key), quote_json(v));
    return v.get<double>();
  }
  // A finite number in (low, high]: eps and RoPE bases outside it give NaN or a silent garbage
  // model (docs/robustness.md "Config ranges").
  double optional_in_range(const char* key, double fallback, double low, double high) const {
    const double v = optional_double(key, fallback);
    CALQ_CHECK(std::isfinite(v) && v > low && v <= high,
               "{}: field \"{}\" is {}; expected a finite number > {} and <= {}", path_, name(key), v,
               low, high);
    return v;
  }
  bool optional_bool(const char* key, bool fallback) const {
    if (!has(key))
      return fallback;
    const nlohmann::json& v = j_.at(key);
    CALQ_CHECK(v.is_boolean(), "{}: field \"{}\" is {}; expected true or false", path_, name(key),
               quote_json(v));
    return v.get<bool>();
  }
  std::optional<std::string> optional_string(const char* key) const {
    if (!has(key))
      return std::nullopt;
    const nlohmann::json& v = j_.at(key);
    CALQ_CHECK(v.is_string(), "{}: field \"{}\" is {}; expected a string", path_, name(key), quote_json(v));
    return v.get<std::string>();
  }
  // bos/eos ids: an integer, null, or (Llama 3 style) a list whose first entry we keep.
  std::optional<int32_t> optional_token_id(const char* key) const {
    if (!has(key))
      return std::nullopt;
    const nlohmann::json& v = j_.at(key);
    if (v.is_array()) {
      if (v.empty() || !v.front().is_number_integer())
        return std::nullopt;
      return v.front().get<int32_t>();
    }
    CALQ_CHECK(v.is_number_integer(), "{}: field \"{}\" is {}; expected an integer", path_, name(key),
               quote_json(v));
    return v.get<int32_t>();
  }

  // A list of finite numbers (longrope's short_factor / long_factor).
  std::vector<double> required_number_list(const char* key) const {
    if (!has(key))
      fail("{}: missing field \"{}\"; expected a list of numbers", path_, name(key));
    const nlohmann::json& v = j_.at(key);
    CALQ_CHECK(v.is_array(), "{}: field \"{}\" is {}; expected a list of numbers", path_, name(key),
               quote_json(v));
    std::vector<double> out;
    for (const nlohmann::json& e : v) {
      CALQ_CHECK(e.is_number() && std::isfinite(e.get<double>()) && e.get<double>() > 0,
                 "{}: field \"{}\" holds {}; expected finite numbers > 0", path_, name(key),
                 quote_json(e));
      out.push_back(e.get<double>());
    }
    return out;
  }

 private:
  int64_t int_value(const char* key) const {
    const nlohmann::json& v = j_.at(key);
    CALQ_CHECK(v.is_number_integer(), "{}: field \"{}\" is {}; expected an integer", path_, name(key),
               quote_json(v));
    return v.get<int64_t>();
  }

  std::string name(const char* key) const { return prefix_ + key; }

  const std::string& path_;
  const nlohmann::json& j_;
  std::string prefix_;
};

}  // namespace calq::core
