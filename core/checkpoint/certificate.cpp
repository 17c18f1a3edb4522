#include "core/checkpoint/certificate.h"

#include <filesystem>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/checkpoint/certificate_parts.h"
#include "core/checkpoint/layout_check.h"
#include "core/error.h"
#include "core/io/atomic_file.h"
#include "core/io/json_text.h"
#include "core/model/model_config.h"
#include "core/model/weight_source.h"

namespace calq::core {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

/// Mismatches find_layout_mismatches may report (a corrupted checkpoint can fail every linear).
constexpr size_t kMaxLayoutFailures = 64;

std::string scheme_text(const PackedLayout& l) {
  std::string s = fmt::format("{}-bit, {}, {}", l.bits,
                              l.per_tensor       ? "per tensor"
                              : l.group_size > 0 ? fmt::format("group {}", l.group_size)
                                                 : std::string("per channel"),
                              l.sym ? "symmetric" : "asymmetric");
  if (l.act_order)
    s += ", act-order";
  if (l.activations)
    s += fmt::format(", int{} {} dynamic activations", l.activations->bits,
                     act_granularity_name(l.activations->granularity));
  return s;
}

std::string format_text(const std::optional<PackedLayout>& l, const ModelConfig& c, bool has_qc) {
  if (l) {
    if (l->format == SaveFormat::CompressedTensors)
      return fmt::format("compressed-tensors ({})", l->ct_format());
    return l->format == SaveFormat::Gptq && l->gptq_v2 ? "gptq (gptq_v2)"
                                                       : save_format_name(l->format);
  }
  if (has_qc)
    return "unreadable quantization_config";
  const char* dtype = c.storage_dtype == c10::ScalarType::Half       ? "float16"
                      : c.storage_dtype == c10::ScalarType::BFloat16 ? "bfloat16"
                      : c.storage_dtype == c10::ScalarType::Float ? "float32"
                                                                  : c10::toString(c.storage_dtype);
  return fmt::format("float ({})", dtype);
}

/// The failures in order, each once (two checks may see the same broken tensor alike).
void dedupe(std::vector<std::string>& v) {
  std::set<std::string> seen;
  std::vector<std::string> out;
  for (std::string& s : v)
    if (seen.insert(s).second)
      out.push_back(std::move(s));
  v = std::move(out);
}

}  // namespace

Certificate certify_checkpoint(const std::string& dir) {
  CALQ_CHECK(fs::is_directory(dir),
             "{}: not a directory; expected an HF model directory "
             "(config.json and safetensors, as `calq run` exports)",
             dir);
  Certificate cert;
  cert.path = dir;
  const std::string config_file = (fs::path(dir) / "config.json").string();
  Json raw;
  ModelConfig config;
  cert.checks.push_back("config.json read with calq's family table");
  try {
    raw = read_json_file(config_file, {"config", "an HF config.json"});
    config = read_hf_config(config_file);
  } catch (const Error& e) {
    cert.failures.push_back(e.message());
    cert.format = "unknown";
    return cert;
  }
  cert.model_type = config.model_type;
  cert.layers = config.n_layers;
  cert.checks.push_back("safetensors headers, index and tensor extents");
  std::shared_ptr<WeightSource> source;
  try {
    source = open_safetensors_source(dir);
  } catch (const Error& e) {
    cert.failures.push_back(e.message());
  }
  const Json qc = raw.is_object() && raw.contains("quantization_config")
                      ? raw.at("quantization_config")
                      : Json(nullptr);
  std::optional<PackedLayout> layout;
  if (!qc.is_null()) {
    cert.checks.push_back("quantization_config schema and version fields");
    const size_t before = cert.failures.size();
    check_config_schema(qc, config_file, cert.failures);
    try {
      layout = parse_quantization_config(qc, config_file);
    } catch (const Error& e) {
      if (cert.failures.size() == before)
        cert.failures.push_back(e.message());
    }
  }
  cert.format = format_text(layout, config, !qc.is_null());
  if (layout)
    cert.scheme = scheme_text(*layout);
  if (source) {
    // A check that stops on something no check foresaw (a LibTorch error on a malformed tensor)
    // is one failure naming the check, not an aborted certificate.
    const auto guarded = [&](const std::string& check, const auto& run) {
      cert.checks.push_back(check);
      try {
        run();
      } catch (const Error& e) {
        cert.failures.push_back(e.message());
      } catch (const std::exception& e) {
        cert.failures.push_back(fmt::format("{}: {}: stopped: {}; expected a readable checkpoint",
                                            dir, check, e.what()));
      }
    };
    Coverage coverage;
    guarded("every decoder linear and expert of the layer schema; ignore lists; lm_head",
            [&] { coverage = check_coverage(config, *source, layout, qc, config_file, cert); });
    if (layout) {
      guarded("group size divides in_features; scale dtypes; finite scales",
              [&] { check_scales(*layout, *source, coverage, config_file, cert); });
      guarded(
          "packed tensors against quantization_config (shapes, dtypes, packing, zero points, "
          "g_idx, code ranges)",
          [&] {
            for (std::string& m :
                 find_layout_mismatches(*layout, *source, config_file, kMaxLayoutFailures))
              cert.failures.push_back(std::move(m));
          });
    }
    dedupe(cert.failures);
    cert.loaders = loader_verdicts(layout, coverage, cert.passed());
  } else {
    cert.loaders = loader_verdicts(layout, Coverage{}, false);
  }
  return cert;
}

std::string Certificate::json() const {
  Json loaders_json = Json::array();
  for (const LoaderVerdict& v : loaders)
    loaders_json.push_back({{"loader", v.loader},
                            {"via", v.via},
                            {"loads", v.loads},
                            {"reason", v.reason},
                            {"source", v.source}});
  const Json doc = {{"path", path},
                    {"passed", passed()},
                    {"format", format},
                    {"scheme", scheme},
                    {"model_type", model_type},
                    {"layers", layers},
                    {"linears",
                     {{"expected", linears_expected},
                      {"quantized", linears_quantized},
                      {"float", linears_float},
                      {"experts", experts}}},
                    {"lm_head_quantized", lm_head_quantized},
                    {"tensors_checked", tensors_checked},
                    {"checks", checks},
                    {"failures", failures},
                    {"loaders", loaders_json}};
  return doc.dump(2);
}

std::string Certificate::text() const {
  std::string out = fmt::format("{}\n", path);
  out += fmt::format("  verdict     {}\n", passed()
                                               ? "PASS"
                                               : fmt::format("FAIL ({} problem{})", failures.size(),
                                                             failures.size() == 1 ? "" : "s"));
  out += fmt::format("  format      {}{}\n", format, scheme.empty() ? "" : ", " + scheme);
  out +=
      fmt::format("  model       {} ({} layers)\n", model_type.empty() ? "?" : model_type, layers);
  out +=
      fmt::format("  linears     {} of the layer schema{}: {} quantized, {} float; lm_head {}\n",
                  linears_expected, experts > 0 ? fmt::format(" ({} routed-expert)", experts) : "",
                  linears_quantized, linears_float, lm_head_quantized ? "quantized" : "float");
  for (const std::string& c : checks)
    out += fmt::format("  checked     {}\n", c);
  for (const LoaderVerdict& v : loaders) {
    out += fmt::format("  {:<11} {} {}{}\n", v.loader, v.loads ? "loads" : "no   ", v.via,
                       v.reason.empty() ? "" : " — " + v.reason);
  }
  for (const std::string& f : failures)
    out += fmt::format("  failure     {}\n", f);
  return out;
}

Certificate write_certificate(const std::string& dir, const std::string& shown_path) {
  Certificate cert = certify_checkpoint(dir);
  cert.path = shown_path;
  write_string_atomically((fs::path(dir) / kCertificateFile).string(), cert.json() + "\n");
  return cert;
}

}  // namespace calq::core
