// The family's layer schema held against a checkpoint's tensors (certificate_parts.h): every
// decoder linear and routed expert present, packed unless the quantization_config declares it
// float in the format's own terms, packed to the schema's shape; lm_head as declared; and, per
// packed linear, group size, scale dtype and finite scales.
//
// How each format declares a float module, as its loader reads it:
//   compressed-tensors: `ignore` and the groups' `targets` — an exact module name, "re:<regex>"
//     matched from the start of the name (Python re.match), or a class name ("Linear"):
//     compressed_tensors/utils/match.py and vLLM's compressed_tensors/utils.py should_ignore_layer;
//   AWQ: `modules_to_not_convert`, substrings of the module name (transformers'
//     integrations/awq.py replace_with_awq_linear);
//   GPTQ: `modules_in_block_to_quantize` (block-relative names; transformers' GPTQConfig) and
//     GPTQModel's `dynamic` negative rules "-:<regex>" (vLLM auto_gptq.py's comment on dynamic).
#include <algorithm>
#include <regex>
#include <set>

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "core/checkpoint/certificate_parts.h"
#include "core/error.h"
#include "core/model/family_table.h"
#include "core/model/layer_schema.h"
#include "core/model/model_config.h"
#include "core/model/weight_source.h"
#include "core/shape_text.h"

namespace calq::core {
namespace {

using Json = nlohmann::json;

/// Python's re.match: the pattern anchored at the start of the name only. An invalid pattern
/// matches nothing (the schema check names the field).
bool re_match(const std::string& pattern, const std::string& name) {
  try {
    const std::regex re(pattern);
    return std::regex_search(name, re, std::regex_constants::match_continuous);
  } catch (const std::regex_error&) {
    return false;
  }
}

std::vector<std::string> string_list(const Json& qc, const char* key) {
  std::vector<std::string> out;
  if (!qc.is_object() || !qc.contains(key) || !qc.at(key).is_array())
    return out;
  for (const Json& e : qc.at(key)) {
    if (e.is_string())
      out.push_back(e.get<std::string>());
    if (e.is_array())  // GPTQ's modules_in_block_to_quantize: a list of sequential steps
      for (const Json& f : e)
        if (f.is_string())
          out.push_back(f.get<std::string>());
  }
  return out;
}

/// "block_sparse_moe.experts.3.w1" for "model.layers.7.block_sparse_moe.experts.3.w1".
std::string name_in_block(const std::string& module) {
  const size_t at = module.find(".layers.");
  if (at == std::string::npos)
    return module;
  const size_t dot = module.find('.', at + 8);
  return dot == std::string::npos ? module : module.substr(dot + 1);
}

/// Which modules the quantization_config declares float, and under which key.
class Declarations {
 public:
  Declarations(const std::optional<PackedLayout>& layout, const Json& qc) : layout_(layout) {
    if (!layout)
      return;
    switch (layout->format) {
      case SaveFormat::CompressedTensors:
        ignore_ = string_list(qc, "ignore");
        if (qc.contains("config_groups") && qc.at("config_groups").is_object())
          for (const auto& [name, g] : qc.at("config_groups").items())
            if (g.is_object()) {
              const std::vector<std::string> t = string_list(g, "targets");
              targets_.insert(targets_.end(), t.begin(), t.end());
            }
        break;
      case SaveFormat::Awq:
        ignore_ = string_list(qc, "modules_to_not_convert");
        break;
      case SaveFormat::Gptq:
        in_block_ = string_list(qc, "modules_in_block_to_quantize");
        has_in_block_ = qc.contains("modules_in_block_to_quantize") &&
                        !qc.at("modules_in_block_to_quantize").is_null();
        if (qc.contains("dynamic") && qc.at("dynamic").is_object())
          for (const auto& [rule, value] : qc.at("dynamic").items())
            if (rule.rfind("-:", 0) == 0)
              ignore_.push_back(rule);
        break;
      case SaveFormat::Fake:
        break;
    }
  }

  /// The entry declaring `module` float ("" when none); `targeted` reports a CT target match.
  std::string float_entry(const std::string& module) const {
    if (!layout_)
      return "";
    for (const std::string& e : ignore_) {
      switch (layout_->format) {
        case SaveFormat::CompressedTensors:
          if (e == module || (e.rfind("re:", 0) == 0 && re_match(e.substr(3), module)))
            return e;
          break;
        case SaveFormat::Awq:
          if (module.find(e) != std::string::npos)
            return e;
          break;
        case SaveFormat::Gptq:
          if (re_match(e.substr(2), module))
            return e;
          break;
        case SaveFormat::Fake:
          break;
      }
    }
    if (has_in_block_ && module.find(".layers.") != std::string::npos &&
        std::find(in_block_.begin(), in_block_.end(), name_in_block(module)) == in_block_.end())
      return "(not in modules_in_block_to_quantize)";
    if (layout_->format == SaveFormat::CompressedTensors && !targeted(module))
      return "(matched by no config_groups target)";
    return "";
  }

  const char* key() const {
    if (!layout_)
      return "";
    switch (layout_->format) {
      case SaveFormat::CompressedTensors:
        return "quantization_config.ignore";
      case SaveFormat::Awq:
        return "quantization_config.modules_to_not_convert";
      case SaveFormat::Gptq:
        return "quantization_config.modules_in_block_to_quantize / dynamic";
      case SaveFormat::Fake:
        break;
    }
    return "";
  }

 private:
  bool targeted(const std::string& module) const {
    for (const std::string& t : targets_) {
      if (t == "Linear" || t == module)
        return true;
      if (t.rfind("re:", 0) == 0 && re_match(t.substr(3), module))
        return true;
    }
    return false;
  }

  const std::optional<PackedLayout>& layout_;
  std::vector<std::string> ignore_, targets_, in_block_;
  bool has_in_block_ = false;
};

const char* marker_of(const PackedLayout& l) {
  return l.format == SaveFormat::CompressedTensors ? ".weight_scale" : ".qweight";
}

/// [out, in] of a packed linear as its tensors give it; empty when they do not say.
std::vector<int64_t> packed_shape(const PackedLayout& l,
                                  const WeightSource& s,
                                  const std::string& p) {
  switch (l.format) {
    case SaveFormat::Gptq: {
      const auto qw = s.shape(p + ".qweight");
      if (qw.size() != 2)
        return {};
      if (s.contains(p + ".g_idx") && s.shape(p + ".g_idx").size() == 1)
        return {qw[1], s.shape(p + ".g_idx")[0]};
      return {qw[1], qw[0] * 32 / l.bits};
    }
    case SaveFormat::Awq: {
      const auto qw = s.shape(p + ".qweight");
      return qw.size() == 2 ? std::vector<int64_t>{qw[1] * 8, qw[0]} : std::vector<int64_t>{};
    }
    case SaveFormat::CompressedTensors:
      if (s.contains(p + ".weight_shape")) {
        const at::Tensor ws = s.load(p + ".weight_shape").to(at::kLong);
        if (ws.numel() == 2)
          return {ws[0].item<int64_t>(), ws[1].item<int64_t>()};
        return {};
      }
      if (s.contains(p + ".weight"))
        return s.shape(p + ".weight");
      return {};
    case SaveFormat::Fake:
      break;
  }
  return {};
}

/// torch's names ("float32"), as transformers and vLLM print dtypes, not c10's ("Float").
std::string dtype_text(c10::ScalarType t) {
  switch (t) {
    case at::kHalf:
      return "float16";
    case at::kBFloat16:
      return "bfloat16";
    case at::kFloat:
      return "float32";
    case at::kDouble:
      return "float64";
    case at::kInt:
      return "int32";
    case at::kChar:
      return "int8";
    case at::kLong:
      return "int64";
    default:
      return c10::toString(t);
  }
}

}  // namespace

Coverage check_coverage(const ModelConfig& config,
                        const WeightSource& source,
                        const std::optional<PackedLayout>& layout,
                        const Json& qc,
                        const std::string& file,
                        Certificate& cert) {
  Coverage cov;
  cov.hidden = config.hidden_size;
  const FamilyRow* row = find_family(config.model_type);
  if (row == nullptr) {
    cert.failures.push_back(
        fmt::format("{}: model_type \"{}\" has no layer schema in calq's "
                    "family table; expected one of {}",
                    file, config.model_type, family_type_list()));
    return cov;
  }
  const Declarations declared(layout, qc);
  const std::string marker = layout ? marker_of(*layout) : ".weight";
  const std::string& where_file = source.path();
  for (int64_t i = 0; i < config.n_layers; ++i) {
    const LayerSchema schema = row->schema(config, source, i);
    for (const LinearSpec& l : schema.linears) {
      if (l.checkpoint.empty())
        continue;  // GPT-2's q, k, v: one fused c_attn, no name of their own
      StoredLinear s{l.checkpoint,  fmt::format("layer {} {}", i, l.name),
                     l.out,         l.in,
                     l.expert >= 0, is_router(l.role),
                     false};
      ++cert.linears_expected;
      if (s.expert)
        ++cert.experts;
      const std::string w = l.checkpoint + ".weight";
      const bool packed = layout && source.contains(l.checkpoint + marker);
      const bool dense = !packed && source.contains(w) && at::isFloatingType(source.dtype(w));
      try {
        if (packed) {
          s.packed = true;
          ++cert.linears_quantized;
          const std::string entry = declared.float_entry(l.checkpoint);
          if (!entry.empty() && entry[0] != '(')
            cert.failures.push_back(fmt::format(
                "{}: {} entry \"{}\" names \"{}\" ({}), which is quantized (tensor \"{}{}\" is "
                "present); expected only modules stored float in it",
                file, declared.key(), entry, l.checkpoint, s.where, l.checkpoint, marker));
          else if (!entry.empty())
            cert.failures.push_back(fmt::format(
                "{}: {}: \"{}\" ({}) is quantized (tensor \"{}{}\") but {}; expected the config to "
                "declare it quantized",
                file, declared.key(), l.checkpoint, s.where, l.checkpoint, marker,
                entry.substr(1, entry.size() - 2)));
          const std::vector<int64_t> got = packed_shape(*layout, source, l.checkpoint);
          if (!got.empty() && got != std::vector<int64_t>{l.out, l.in})
            cert.failures.push_back(fmt::format(
                "{}: tensor \"{}{}\" packs a {} weight but the {} layer schema (config.json) has "
                "{} for {}; expected the schema's [out, in]",
                where_file, l.checkpoint, marker, shape_text(got), config.model_type,
                shape_text({l.out, l.in}), s.where));
        } else if (dense) {
          ++cert.linears_float;
          const std::string entry = declared.float_entry(l.checkpoint);
          if (layout && !s.router && entry.empty())
            cert.failures.push_back(fmt::format(
                "{}: tensor \"{}\" ({}) is stored float, but quantization_config declares it "
                "quantized; expected tensor \"{}{}\" (every decoder linear quantized as "
                "declared) or the module named in {}",
                where_file, w, s.where, l.checkpoint, marker, declared.key()));
        } else {
          cert.failures.push_back(fmt::format(
              "{}: tensor \"{}{}\" is missing ({}{}); expected every decoder linear{} of the {} "
              "layer schema (config.json)",
              where_file, l.checkpoint, layout ? marker : std::string(".weight"), s.where,
              s.expert ? ", a routed expert" : "", config.moe.n_experts > 0 ? " and expert" : "",
              config.model_type));
        }
      } catch (const Error& e) {
        cert.failures.push_back(e.message());
      }
      cov.linears.push_back(std::move(s));
    }
  }
  // lm_head: packed exactly when the config says so, in each format's terms.
  if (!layout)
    return cov;
  const std::string lm = config.weight_prefix + "lm_head";
  cov.lm_head_packed = source.contains(lm + marker);
  cert.lm_head_quantized = cov.lm_head_packed;
  const bool lm_float = source.contains(lm + ".weight") && !cov.lm_head_packed;
  switch (layout->format) {
    case SaveFormat::Gptq: {
      const bool declared_q = qc.contains("lm_head") && qc.at("lm_head") == Json(true);
      if (declared_q != cov.lm_head_packed && (cov.lm_head_packed || lm_float))
        cert.failures.push_back(fmt::format(
            "{}: quantization_config.lm_head is {} but {}; expected lm_head: {}", file,
            declared_q ? "true" : "false",
            cov.lm_head_packed ? fmt::format("tensor \"{}.qweight\" is present", lm)
                               : fmt::format("lm_head is stored float (tensor \"{}.weight\")", lm),
            cov.lm_head_packed ? "true" : "false"));
      break;
    }
    case SaveFormat::Awq:
      if (cov.lm_head_packed)
        cert.failures.push_back(fmt::format(
            "{}: tensor \"{}.qweight\" is present; expected lm_head float (transformers' and "
            "vLLM's AWQ loaders keep lm_head an unquantized linear)",
            where_file, lm));
      break;
    case SaveFormat::CompressedTensors: {
      const std::string entry = declared.float_entry(lm);
      if (cov.lm_head_packed && !entry.empty() && entry[0] != '(')
        cert.failures.push_back(fmt::format(
            "{}: quantization_config.ignore entry \"{}\" names lm_head, which is quantized (tensor "
            "\"{}.weight_scale\" is present); expected lm_head not in ignore",
            file, entry, lm));
      if (lm_float && entry.empty())
        cert.failures.push_back(fmt::format(
            "{}: quantization_config.ignore does not name lm_head, which config_groups targets "
            "but is stored float (tensor \"{}.weight\"); expected \"lm_head\" in ignore",
            file, lm));
      break;
    }
    case SaveFormat::Fake:
      break;
  }
  return cov;
}

void check_scales(const PackedLayout& layout,
                  const WeightSource& source,
                  const Coverage& coverage,
                  const std::string& file,
                  Certificate& cert) {
  const bool ct = layout.format == SaveFormat::CompressedTensors;
  const std::string suffix = ct ? ".weight_scale" : ".scales";
  for (const StoredLinear& l : coverage.linears) {
    if (!l.packed)
      continue;
    try {
      // vLLM's GPTQ/AWQ/WNA16 kernels (and AutoGPTQ's packing) need whole groups: Marlin and
      // Exllama refuse in_features % group_size != 0 (kernels/linear/mixed_precision/*.py).
      if (layout.group_size > 0 && l.in % layout.group_size != 0)
        cert.failures.push_back(fmt::format(
            "{}: {}.group_size {} does not divide in_features {} of \"{}\" ({}); expected a group "
            "size dividing every quantized linear's in_features",
            file, layout.weights_key, layout.group_size, l.in, l.prefix, l.where));
      const std::string name = l.prefix + suffix;
      if (!source.contains(name))
        continue;  // the layout check names the missing tensor
      const c10::ScalarType t = source.dtype(name);
      if (!ct && t != at::kHalf) {
        cert.failures.push_back(fmt::format(
            "{}: tensor \"{}\" has dtype {}; expected float16 ({} kernels and GPTQModel read half "
            "scales)",
            source.path(), name, dtype_text(t), save_format_name(layout.format)));
        continue;
      }
      if (ct && t != at::kHalf && t != at::kBFloat16 && t != at::kFloat) {
        cert.failures.push_back(fmt::format(
            "{}: tensor \"{}\" has dtype {}; expected float16, bfloat16 or float32 scales",
            source.path(), name, dtype_text(t)));
        continue;
      }
      const at::Tensor s = source.load(name).to(at::kFloat);
      ++cert.tensors_checked;
      const int64_t bad = s.numel() - at::isfinite(s).sum().item<int64_t>();
      if (bad > 0)
        cert.failures.push_back(fmt::format(
            "{}: tensor \"{}\" holds {} non-finite (NaN/Inf) scale{} of {}; expected finite scales",
            source.path(), name, bad, bad == 1 ? "" : "s", s.numel()));
    } catch (const Error& e) {
      cert.failures.push_back(e.message());
    }
  }
}

}  // namespace calq::core
