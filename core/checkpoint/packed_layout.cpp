#include "core/checkpoint/packed_layout.h"

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/io/json_text.h"

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
              {"meta", {{"quantizer", Json::array({"calq:0.1.0"})}}}};
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
  CALQ_CHECK(j.contains(key), "{}: {}.{}: missing", file, where, key);
  try {
    return j.at(key).get<T>();
  } catch (const Json::exception&) {
    fail("{}: {}.{}: has the wrong type ({})", file, where, key, quote_json(j.at(key)));
  }
}

void check_bits(int bits, const std::string& file, const std::string& where) {
  CALQ_CHECK(bits == 2 || bits == 3 || bits == 4 || bits == 8,
             "{}: {}: {} bits; expected 2, 3, 4 or 8", file, where, bits);
}

}  // namespace

std::optional<PackedLayout> parse_quantization_config(const Json& c, const std::string& file) {
  const std::string where = "quantization_config";
  const std::string method = get<std::string>(c, "quant_method", file, where);
  PackedLayout l;
  if (method == "gptq") {
    l.format = SaveFormat::Gptq;
    l.bits = get<int>(c, "bits", file, where);
    check_bits(l.bits, file, where + ".bits");
    l.group_size = get<int64_t>(c, "group_size", file, where);
    l.sym = c.value("sym", true);  // AutoGPTQ assumes true when absent (formats.md §2.7)
    l.act_order = c.value("desc_act", false);
    const std::string fmt = c.value("checkpoint_format", c.value("format", std::string("gptq")));
    CALQ_CHECK(fmt == "gptq" || fmt == "gptq_v2",
               "{}: {}.checkpoint_format \"{}\"; expected gptq or gptq_v2", file, where, fmt);
    l.gptq_v2 = fmt == "gptq_v2";
    return l;
  }
  if (method == "awq") {
    l.format = SaveFormat::Awq;
    l.bits = c.contains("bits") ? get<int>(c, "bits", file, where) : get<int>(c, "w_bit", file, where);
    CALQ_CHECK(l.bits == 4, "{}: {}.bits: {}; AWQ GEMM checkpoints are 4-bit", file, where, l.bits);
    l.group_size = c.contains("group_size") ? get<int64_t>(c, "group_size", file, where)
                                            : get<int64_t>(c, "q_group_size", file, where);
    const std::string version = c.value("version", std::string("gemm"));
    CALQ_CHECK(version == "gemm" || version == "GEMM",
               "{}: {}.version \"{}\"; calq reads the gemm layout only", file, where, version);
    l.sym = false;
    return l;
  }
  if (method == "compressed-tensors") {
    l.format = SaveFormat::CompressedTensors;
    const Json& groups = c.at("config_groups");
    CALQ_CHECK(groups.is_object() && groups.size() == 1,
               "{}: {}.config_groups: {} groups; calq reads checkpoints with one", file, where,
               groups.size());
    const Json& g = groups.begin().value();
    const std::string gwhere = where + ".config_groups." + groups.begin().key();
    const Json& w = g.at("weights");
    l.bits = get<int>(w, "num_bits", file, gwhere + ".weights");
    check_bits(l.bits, file, gwhere + ".weights.num_bits");
    CALQ_CHECK(w.value("type", std::string("int")) == "int",
               "{}: {}.weights.type: expected int", file, gwhere);
    l.sym = w.value("symmetric", true);
    const std::string strategy = get<std::string>(w, "strategy", file, gwhere + ".weights");
    CALQ_CHECK(strategy == "group" || strategy == "channel" || strategy == "tensor",
               "{}: {}.weights.strategy \"{}\"; expected group, channel or tensor", file, gwhere,
               strategy);
    l.per_tensor = strategy == "tensor";
    l.group_size = strategy == "group" ? get<int64_t>(w, "group_size", file, gwhere + ".weights") : -1;
    l.act_order = w.contains("actorder") && !w.at("actorder").is_null() &&
                  w.at("actorder").get<std::string>() != "weight";
    if (g.contains("input_activations") && !g.at("input_activations").is_null()) {
      const Json& a = g.at("input_activations");
      ActQuantSpec spec;
      spec.bits = get<int>(a, "num_bits", file, gwhere + ".input_activations");
      spec.sym = a.value("symmetric", true);
      const std::string s = get<std::string>(a, "strategy", file, gwhere + ".input_activations");
      CALQ_CHECK(a.value("dynamic", false) == true && (s == "token" || s == "tensor"),
                 "{}: {}.input_activations: strategy {} dynamic {}; calq reads dynamic token or "
                 "tensor activations only", file, gwhere, s, a.value("dynamic", false));
      spec.granularity = s == "token" ? ActGranularity::PerToken : ActGranularity::PerTensor;
      l.activations = spec;
    }
    const std::string format = c.value("format", g.value("format", l.ct_format()));
    CALQ_CHECK(format == l.ct_format(), "{}: {}.format \"{}\"; expected {} for this scheme", file,
               where, format, l.ct_format());
    return l;
  }
  fail("{}: {}.quant_method \"{}\"; calq reads gptq, awq and compressed-tensors", file, where,
       method);
}

}  // namespace calq::core
