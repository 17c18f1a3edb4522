#include "core/checkpoint/packed_layout.h"

#include <type_traits>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/io/json_text.h"
#include "core/version.h"

namespace calq::core {

using Json = nlohmann::json;

std::string PackedLayout::ct_format() const {
  if (activations) return "int-quantized";
  return bits == 4 || bits == 8 ? "pack-quantized" : "naive-quantized";
}

namespace {

Json ct_weights(const PackedLayout& l) {
  const char* strategy = l.per_tensor ? "tensor" : l.group_size > 0 ? "group" : "channel";
  return {{"num_bits", l.bits},
          {"type", "int"},
          {"symmetric", l.sym},
          {"strategy", strategy},
          {"group_size", l.group_size > 0 ? Json(l.group_size) : Json(nullptr)},
          {"dynamic", false},
          {"actorder", l.act_order ? Json("group") : Json(nullptr)},
          {"block_structure", nullptr},
          {"observer", "minmax"},
          {"observer_kwargs", Json::object()}};
}

Json ct_activations(const ActQuantSpec& a) {
  return {{"num_bits", a.bits},
          {"type", "int"},
          {"symmetric", a.sym},
          {"strategy", a.granularity == ActGranularity::PerToken ? "token" : "tensor"},
          {"group_size", nullptr},
          {"dynamic", true},
          {"actorder", nullptr},
          {"block_structure", nullptr},
          {"observer", nullptr},
          {"observer_kwargs", Json::object()}};
}

}  // namespace

Json quantization_config_json(const PackedLayout& l) {
  switch (l.format) {
    case SaveFormat::Gptq:
      return {{"quant_method", "gptq"},
              {"checkpoint_format", l.gptq_v2 ? "gptq_v2" : "gptq"},
              {"bits", l.bits},
              {"group_size", l.group_size},
              {"desc_act", l.act_order},
              {"sym", l.sym},
              {"static_groups", false},
              {"true_sequential", true},
              {"lm_head", false},
              {"meta", {{"quantizer", Json::array({std::string("calq:") + calq_version()})}}}};
    case SaveFormat::Awq:
      return {{"quant_method", "awq"},
              {"bits", l.bits},
              {"group_size", l.group_size},
              {"zero_point", true},
              {"version", "gemm"},
              {"modules_to_not_convert", nullptr}};
    case SaveFormat::CompressedTensors: {
      const std::string format = l.ct_format();
      Json group = {{"targets", Json::array({"Linear"})},
                    {"weights", ct_weights(l)},
                    {"input_activations", l.activations ? ct_activations(*l.activations) : Json(nullptr)},
                    {"output_activations", nullptr},
                    {"format", format}};
      return {{"quant_method", "compressed-tensors"},
              {"format", format},
              {"quantization_status", "compressed"},
              {"config_groups", {{"group_0", group}}},
              {"ignore", Json::array({"lm_head"})},
              {"kv_cache_scheme", nullptr},
              {"global_compression_ratio", nullptr},
              {"sparsity_config", Json::object()},
              {"transform_config", Json::object()},
              {"version", "0.12.0"}};
    }
    case SaveFormat::Fake:
      break;
  }
  throw InternalError("quantization_config_json: fake checkpoints have no quantization_config");
}

namespace {

template <typename T>
T get(const Json& j, const char* key, const std::string& file, const std::string& where) {
  CALQ_CHECK(j.is_object() && j.contains(key), "{}: {}.{}: missing", file, where, key);
  try {
    return j.at(key).get<T>();
  } catch (const Json::exception&) {
    const char* want = std::is_same_v<T, bool>         ? "true or false"
                       : std::is_same_v<T, std::string> ? "a string"
                                                        : "an integer";
    fail("{}: {}.{}: has the wrong type ({}); expected {}", file, where, key, quote_json(j.at(key)),
         want);
  }
}

/// j[key] when present and not null, else `fallback`; a value of the wrong type is an error
/// (nlohmann's value() would throw its own exception, which the CLI reports as internal).
template <typename T>
T get_or(const Json& j, const char* key, T fallback, const std::string& file,
         const std::string& where) {
  if (!j.is_object() || !j.contains(key) || j.at(key).is_null()) return fallback;
  return get<T>(j, key, file, where);
}

const Json& member(const Json& j, const char* key, const std::string& file,
                   const std::string& where) {
  CALQ_CHECK(j.is_object() && j.contains(key) && j.at(key).is_object(),
             "{}: {}.{}: missing or not an object; expected a JSON object", file, where, key);
  return j.at(key);
}

void check_bits(int bits, const std::string& file, const std::string& where) {
  CALQ_CHECK(bits == 2 || bits == 3 || bits == 4 || bits == 8,
             "{}: {}: {} bits; expected 2, 3, 4 or 8", file, where, bits);
}

void check_group_size(int64_t g, const std::string& file, const std::string& where) {
  CALQ_CHECK(g == -1 || g > 0, "{}: {}: {}; expected -1 (per channel) or a positive group size",
             file, where, g);
}

/// AutoRound's own format (quant_method "auto-round"), as auto-round 0.15's
/// export/export_to_autoround/export.py and export/formats/backends/autoround.py write it:
/// packing_format names the packer of qweight / qzeros / scales —
///   auto_round:auto_gptq   auto_round_extension/torch/qlinear_torch_zp.py: GPTQ packing, zeros
///                          stored minus 1 (GPTQ v1), no g_idx (what "auto_round" gives for sym)
///   auto_round:gptqmodel   auto_round_extension/torch/qlinear_torch.py with g_idx: GPTQ packing,
///                          zeros as they are (GPTQ v2)
///   auto_round             the same QuantLinear without g_idx (weight-only asym when not AWQ)
///   auto_round:auto_awq    AWQ GEMM packing (what "auto_round" gives for asym 4-bit)
/// extra_config holds per-layer overrides; one that quantizes a layer differently is refused.
PackedLayout parse_auto_round(const Json& c, const std::string& file) {
  const std::string where = "quantization_config";
  PackedLayout l;
  l.weights_key = where;
  const std::string packing =
      get_or(c, "packing_format", std::string("auto_round:auto_gptq"), file, where);
  l.declared = "auto-round (packing_format " + packing + ")";
  const std::string data_type = get_or(c, "data_type", std::string("int"), file, where);
  CALQ_CHECK(data_type == "int", "{}: {}.data_type \"{}\"; calq reads AutoRound's int weights only",
             file, where, data_type);
  const int act_bits = get_or(c, "act_bits", 16, file, where);
  CALQ_CHECK(act_bits >= 16, "{}: {}.act_bits: {}; calq reads weight-only AutoRound checkpoints "
             "(act_bits 16)", file, where, act_bits);
  l.bits = get<int>(c, "bits", file, where);
  check_bits(l.bits, file, where + ".bits");
  l.group_size = get<int64_t>(c, "group_size", file, where);
  check_group_size(l.group_size, file, where + ".group_size");
  l.sym = get_or(c, "sym", true, file, where);
  if (packing == "auto_round:auto_gptq" || packing == "auto_round:gptqmodel" ||
      packing == "auto_round") {
    l.format = SaveFormat::Gptq;
    l.gptq_v2 = packing != "auto_round:auto_gptq";
    l.g_idx_stored = packing == "auto_round:gptqmodel";
  } else if (packing == "auto_round:auto_awq") {
    l.format = SaveFormat::Awq;
    CALQ_CHECK(l.bits == 4, "{}: {}.bits: {}; AWQ GEMM packing holds 4-bit weights", file, where,
               l.bits);
  } else {
    fail("{}: {}.packing_format \"{}\"; calq reads auto_round, auto_round:auto_gptq, "
         "auto_round:gptqmodel and auto_round:auto_awq", file, where, packing);
  }
  if (c.contains("extra_config") && c.at("extra_config").is_object()) {
    for (const auto& [layer, cfg] : c.at("extra_config").items()) {
      const std::string lwhere = where + ".extra_config." + layer;
      const int bits = get_or(cfg, "bits", l.bits, file, lwhere);
      if (bits >= 16) continue;  // kept in float: stored as <layer>.weight, read as such
      const int64_t g = get_or(cfg, "group_size", l.group_size, file, lwhere);
      const bool sym = get_or(cfg, "sym", l.sym, file, lwhere);
      CALQ_CHECK(bits == l.bits && g == l.group_size && sym == l.sym,
                 "{}: {}: w{} g{} {} differs from the checkpoint's w{} g{} {}; calq reads one "
                 "layout per checkpoint", file, lwhere, bits, g, sym ? "sym" : "asym", l.bits,
                 l.group_size, l.sym ? "sym" : "asym");
    }
  }
  return l;
}

}  // namespace

std::optional<PackedLayout> parse_quantization_config(const Json& c, const std::string& file) {
  const std::string where = "quantization_config";
  const std::string method = get<std::string>(c, "quant_method", file, where);
  PackedLayout l;
  l.weights_key = where;
  if (method == "gptq") {
    l.format = SaveFormat::Gptq;
    l.bits = get<int>(c, "bits", file, where);
    check_bits(l.bits, file, where + ".bits");
    l.group_size = get<int64_t>(c, "group_size", file, where);
    check_group_size(l.group_size, file, where + ".group_size");
    l.sym = get_or(c, "sym", true, file, where);  // AutoGPTQ assumes true when absent (§2.7)
    l.act_order = get_or(c, "desc_act", false, file, where);
    const std::string fallback = get_or(c, "format", std::string("gptq"), file, where);
    const std::string fmt = get_or(c, "checkpoint_format", fallback, file, where);
    CALQ_CHECK(fmt == "gptq" || fmt == "gptq_v2",
               "{}: {}.checkpoint_format \"{}\"; expected gptq or gptq_v2", file, where, fmt);
    l.gptq_v2 = fmt == "gptq_v2";
    return l;
  }
  if (method == "auto-round") return parse_auto_round(c, file);
  if (method == "awq") {
    l.format = SaveFormat::Awq;
    l.bits = c.contains("bits") ? get<int>(c, "bits", file, where) : get<int>(c, "w_bit", file, where);
    CALQ_CHECK(l.bits == 4, "{}: {}.bits: {}; AWQ GEMM checkpoints are 4-bit", file, where, l.bits);
    l.group_size = c.contains("group_size") ? get<int64_t>(c, "group_size", file, where)
                                            : get<int64_t>(c, "q_group_size", file, where);
    check_group_size(l.group_size, file, where + ".group_size");
    const std::string version = get_or(c, "version", std::string("gemm"), file, where);
    CALQ_CHECK(version == "gemm" || version == "GEMM",
               "{}: {}.version \"{}\"; calq reads the gemm layout only", file, where, version);
    // zero_point: false is a symmetric grid. AutoRound's auto_awq export (auto_round/export/
    // export_to_awq) still stores qzeros, every one 2^(b−1); the tensor check holds that.
    l.sym = !get_or(c, "zero_point", true, file, where);
    return l;
  }
  if (method == "compressed-tensors") {
    l.format = SaveFormat::CompressedTensors;
    const Json& groups = member(c, "config_groups", file, where);
    CALQ_CHECK(groups.size() == 1,
               "{}: {}.config_groups: {} groups; calq reads checkpoints with one", file, where,
               groups.size());
    const std::string gwhere = where + ".config_groups." + groups.begin().key();
    const Json& g = groups.begin().value();
    CALQ_CHECK(g.is_object(), "{}: {}: not an object; expected a config group", file, gwhere);
    const Json& w = member(g, "weights", file, gwhere);
    const std::string wwhere = gwhere + ".weights";
    l.weights_key = wwhere;
    l.bits = get<int>(w, "num_bits", file, wwhere);
    check_bits(l.bits, file, wwhere + ".num_bits");
    const std::string type = get_or(w, "type", std::string("int"), file, wwhere);
    CALQ_CHECK(type == "int", "{}: {}.type \"{}\"; calq reads int weights only (expected int)",
               file, wwhere, type);
    l.sym = get_or(w, "symmetric", true, file, wwhere);
    const std::string strategy = get<std::string>(w, "strategy", file, wwhere);
    CALQ_CHECK(strategy == "group" || strategy == "channel" || strategy == "tensor",
               "{}: {}.strategy \"{}\"; expected group, channel or tensor", file, wwhere, strategy);
    l.per_tensor = strategy == "tensor";
    l.group_size = strategy == "group" ? get<int64_t>(w, "group_size", file, wwhere) : -1;
    CALQ_CHECK(l.group_size > 0 || strategy != "group",
               "{}: {}.group_size: {} with strategy \"group\"; expected a positive group size",
               file, wwhere, l.group_size);
    const std::string actorder = get_or(w, "actorder", std::string(), file, wwhere);
    // Aliases as compressed-tensors' ActivationOrdering: dynamic = group, static = weight.
    CALQ_CHECK(actorder.empty() || actorder == "group" || actorder == "dynamic" ||
                   actorder == "weight" || actorder == "static",
               "{}: {}.actorder \"{}\"; expected null, group or weight", file, wwhere, actorder);
    l.act_order = actorder == "group" || actorder == "dynamic";
    const std::string awhere = gwhere + ".input_activations";
    if (g.contains("input_activations") && !g.at("input_activations").is_null()) {
      const Json& a = member(g, "input_activations", file, gwhere);
      ActQuantSpec spec;
      spec.bits = get<int>(a, "num_bits", file, awhere);
      spec.sym = get_or(a, "symmetric", true, file, awhere);
      const std::string s = get<std::string>(a, "strategy", file, awhere);
      const bool dynamic = a.contains("dynamic") && a.at("dynamic").is_boolean() &&
                           a.at("dynamic").get<bool>();
      CALQ_CHECK(dynamic && (s == "token" || s == "tensor"),
                 "{}: {}: strategy {} dynamic {}; calq reads dynamic token or tensor activations "
                 "only", file, awhere, s,
                 a.contains("dynamic") ? quote_json(a.at("dynamic")) : "absent");
      spec.granularity = s == "token" ? ActGranularity::PerToken : ActGranularity::PerTensor;
      l.activations = spec;
    }
    const std::string format = get_or(c, "format", get_or(g, "format", l.ct_format(), file, gwhere),
                                      file, where);
    CALQ_CHECK(format == l.ct_format(), "{}: {}.format \"{}\"; expected {} for this scheme", file,
               where, format, l.ct_format());
    return l;
  }
  fail("{}: {}.quant_method \"{}\"; calq reads gptq, awq, auto-round and compressed-tensors",
       file, where, method);
}

}  // namespace calq::core
