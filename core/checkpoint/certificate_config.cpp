// quantization_config against the schema of its quant_method, field by field, every problem
// collected (parse_quantization_config stops at the first). The required fields are those the
// loaders read without a default: vLLM's AutoGPTQConfig.from_config reads bits, group_size,
// desc_act and sym with get_from_keys (vllm/model_executor/layers/quantization/auto_gptq.py),
// AutoAWQConfig reads w_bit|bits, q_group_size|group_size and zero_point (auto_awq.py), and
// compressed-tensors' QuantizationConfig (compressed_tensors/quantization/quant_config.py) the
// format, quantization_status, config_groups and version.
#include <algorithm>
#include <regex>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "core/checkpoint/certificate_parts.h"
#include "core/io/json_text.h"

namespace calq::core {
namespace {

using Json = nlohmann::json;

/// The fields of one JSON object under check, and where the problems go.
class Fields {
 public:
  Fields(const Json& j, std::string file, std::string where, std::vector<std::string>& out)
      : j_(j), file_(std::move(file)), where_(std::move(where)), out_(out) {}

  bool has(const char* key) const {
    return j_.is_object() && j_.contains(key) && !j_.at(key).is_null();
  }
  const Json& at(const char* key) const { return j_.at(key); }
  std::string key(const char* k) const { return where_ + "." + k; }

  void problem(const char* k, const std::string& what, const std::string& expected) const {
    out_.push_back(fmt::format("{}: {}: {}; expected {}", file_, key(k), what, expected));
  }

  /// A required integer among `allowed` (empty: any); false when absent or wrong.
  bool int_in(const char* k,
              const std::vector<int64_t>& allowed,
              const std::string& expected,
              bool required = true) const {
    if (!has(k)) {
      if (required)
        problem(k, "missing", expected);
      return false;
    }
    if (!at(k).is_number_integer()) {
      problem(k, fmt::format("{} is not an integer", quote_json(at(k))), expected);
      return false;
    }
    const int64_t v = at(k).get<int64_t>();
    if (!allowed.empty() && std::find(allowed.begin(), allowed.end(), v) == allowed.end()) {
      problem(k, fmt::format("{}", v), expected);
      return false;
    }
    return true;
  }

  void group_size(const char* k, bool required = true) const {
    if (!int_in(k, {}, "-1 (per channel) or a positive group size", required))
      return;
    const int64_t g = at(k).get<int64_t>();
    if (g != -1 && g <= 0)
      problem(k, fmt::format("{}", g), "-1 (per channel) or a positive group size");
  }

  void boolean(const char* k, bool required = true) const {
    if (!has(k)) {
      if (required)
        problem(k, "missing", "true or false");
      return;
    }
    if (!at(k).is_boolean())
      problem(k, fmt::format("{} is not a boolean", quote_json(at(k))), "true or false");
  }

  /// A string among `allowed`; returns it ("" when absent or not a string).
  std::string string_in(const char* k,
                        const std::vector<std::string>& allowed,
                        bool required) const {
    const std::string expected =
        allowed.empty() ? "a string" : fmt::format("one of {}", fmt::join(allowed, ", "));
    if (!has(k)) {
      if (required)
        problem(k, "missing", expected);
      return "";
    }
    if (!at(k).is_string()) {
      problem(k, fmt::format("{} is not a string", quote_json(at(k))), expected);
      return "";
    }
    const std::string v = at(k).get<std::string>();
    if (!allowed.empty() && std::find(allowed.begin(), allowed.end(), v) == allowed.end())
      problem(k, fmt::format("\"{}\" is not a value the format defines", v), expected);
    return v;
  }

  void string_list(const char* k) const {
    if (!has(k))
      return;
    bool ok = at(k).is_array();
    if (ok)
      for (const Json& e : at(k))
        ok = ok && e.is_string();
    if (!ok)
      problem(k, fmt::format("{} is not a list of strings", quote_json(at(k))),
              "a list of module names");
  }

 private:
  const Json& j_;
  std::string file_, where_;
  std::vector<std::string>& out_;
};

void check_gptq(const Fields& f) {
  f.int_in("bits", {2, 3, 4, 8}, "2, 3, 4 or 8");
  f.group_size("group_size");
  f.boolean("desc_act");  // vLLM get_from_keys(["desc_act"]): no default
  f.boolean("sym");
  f.boolean("lm_head", false);
  f.string_in("checkpoint_format", {"gptq", "gptq_v2"}, false);
}

void check_awq(const Fields& f) {
  const char* bits = f.has("bits") || !f.has("w_bit") ? "bits" : "w_bit";
  f.int_in(bits, {4}, "4 (AWQ GEMM packs eight 4-bit codes per int32)");
  f.group_size(f.has("group_size") || !f.has("q_group_size") ? "group_size" : "q_group_size");
  f.boolean("zero_point");
  const std::string v = f.string_in("version", {}, true);
  if (!v.empty() && v != "gemm" && v != "GEMM")
    f.problem("version", fmt::format("\"{}\"", v), "gemm (the layout calq writes and reads)");
  f.string_list("modules_to_not_convert");
}

// compressed-tensors' CompressionFormat values (compressed_tensors/config/base.py) and
// QuantizationStatus (quantization/quant_config.py).
const std::vector<std::string> kCtFormats = {
    "dense",           "sparse-bitmask",       "sparse-24-bitmask",   "int-quantized",
    "float-quantized", "naive-quantized",      "pack-quantized",      "marlin-24",
    "mixed-precision", "nvfp4-pack-quantized", "mxfp4-pack-quantized"};
const std::vector<std::string> kCtStatus = {"initialized", "calibration", "frozen", "compressed"};

void check_ct_args(const Fields& a, bool weights) {
  a.int_in("num_bits", {2, 3, 4, 8}, "2, 3, 4 or 8");
  a.string_in("type", {"int", "float"}, false);
  a.boolean("symmetric", false);
  const std::string strategy =
      a.string_in("strategy",
                  weights ? std::vector<std::string>{"tensor", "channel", "group"}
                          : std::vector<std::string>{"token", "tensor"},
                  true);
  if (weights && strategy == "group") {
    a.int_in("group_size", {}, "a positive group size with strategy \"group\"");
    if (a.has("group_size") && a.at("group_size").is_number_integer() &&
        a.at("group_size").get<int64_t>() <= 0)
      a.problem("group_size", fmt::format("{}", a.at("group_size").get<int64_t>()),
                "a positive group size with strategy \"group\"");
  }
  if (weights) {
    if (a.has("dynamic") && a.at("dynamic") != Json(false))
      a.problem("dynamic", quote_json(a.at("dynamic")), "false (weights are quantized offline)");
    a.string_in("actorder", {"group", "weight", "static", "dynamic"}, false);
  } else if (!a.has("dynamic") || a.at("dynamic") != Json(true)) {
    a.problem("dynamic", a.has("dynamic") ? quote_json(a.at("dynamic")) : "missing",
              "true (calq writes dynamic activation quantization only; static needs "
              "input_scale tensors)");
  }
}

void check_compressed_tensors(const Json& qc,
                              const Fields& f,
                              const std::string& file,
                              std::vector<std::string>& out) {
  const std::string format = f.string_in("format", kCtFormats, true);
  f.string_in("quantization_status", kCtStatus, true);
  if (f.has("quantization_status") && f.at("quantization_status") != Json("compressed"))
    f.problem("quantization_status", quote_json(f.at("quantization_status")),
              "\"compressed\" (the tensors hold packed codes)");
  const std::string version = f.string_in("version", {}, true);
  static const std::regex kSemver(R"(^\d+\.\d+\.\d+([.+-].*)?$)");
  if (!version.empty() && !std::regex_match(version, kSemver))
    f.problem("version", fmt::format("\"{}\"", version),
              "a compressed-tensors version such as 0.12.0");
  f.string_list("ignore");
  if (!f.has("config_groups") || !qc.at("config_groups").is_object() ||
      qc.at("config_groups").empty()) {
    f.problem("config_groups", f.has("config_groups") ? "empty or not an object" : "missing",
              "one or more quantization groups");
    return;
  }
  for (const auto& [name, g] : qc.at("config_groups").items()) {
    const Fields gf(g, file, f.key("config_groups") + "." + name, out);
    if (!g.is_object()) {
      out.push_back(
          fmt::format("{}: {}.config_groups.{}: not an object; expected a quantization "
                      "group",
                      file, "quantization_config", name));
      continue;
    }
    bool targets_ok = gf.has("targets") && g.at("targets").is_array() && !g.at("targets").empty();
    if (targets_ok)
      for (const Json& t : g.at("targets"))
        targets_ok = targets_ok && t.is_string();
    if (!targets_ok)
      gf.problem("targets", gf.has("targets") ? quote_json(g.at("targets")) : "missing",
                 "a non-empty list of module names or classes (\"Linear\")");
    const std::string gformat = gf.string_in("format", kCtFormats, false);
    if (!gformat.empty() && !format.empty() && gformat != format)
      gf.problem("format",
                 fmt::format("\"{}\" but quantization_config.format is \"{}\"", gformat, format),
                 "the same format (calq writes one group)");
    if (!gf.has("weights") || !g.at("weights").is_object()) {
      gf.problem("weights", "missing or not an object", "the weights' quantization arguments");
    } else {
      check_ct_args(Fields(g.at("weights"), file, gf.key("weights"), out), true);
    }
    if (gf.has("input_activations"))
      check_ct_args(Fields(g.at("input_activations"), file, gf.key("input_activations"), out),
                    false);
  }
}

}  // namespace

void check_config_schema(const Json& qc,
                         const std::string& file,
                         std::vector<std::string>& failures) {
  const Fields f(qc, file, "quantization_config", failures);
  if (!qc.is_object()) {
    failures.push_back(
        fmt::format("{}: quantization_config: {} is not an object; expected the "
                    "quantization config of a packed format",
                    file, quote_json(qc)));
    return;
  }
  const std::string method =
      f.string_in("quant_method", {"gptq", "awq", "compressed-tensors"}, true);
  if (method == "gptq")
    check_gptq(f);
  if (method == "awq")
    check_awq(f);
  if (method == "compressed-tensors")
    check_compressed_tensors(qc, f, file, failures);
}

}  // namespace calq::core
