#include "algorithms/layer_checkpoints.h"

#include <ATen/ATen.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <utility>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/io/dtype.h"
#include "core/io/json_text.h"
#include "core/log.h"
#include "core/io/safetensors.h"
#include "core/model/linear_extension_registry.h"
#include "core/model/model.h"
#include "core/quant/grid.h"

namespace calq::algorithms {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// 2: each linear's extensions by kind name (core/model/linear_extension.h), enums by name
// (granularity, scale dtype); version 1 files (fixed input_quant/output_quant/int8/low_rank
// fields, enums as raw ints) are refused, naming the file.
constexpr int kVersion = 2;
constexpr const char* kMetaKey = "calq_resume";

/// Same bits, not just equal values: -0.0 and +0.0 compare equal but are not the same weight.
bool same_bits(const at::Tensor& a, const at::Tensor& b) {
  if (a.scalar_type() != b.scalar_type() || a.sizes() != b.sizes()) return false;
  const auto as_ints = [](const at::Tensor& t) {
    const at::Tensor c = t.contiguous().reshape({-1});  // stride 1 even for size-1 dims
    switch (c.element_size()) {
      case 2: return c.view(at::kShort);
      case 4: return c.view(at::kInt);
      default: return c.view(at::kLong);
    }
  };
  return at::equal(as_ints(a), as_ints(b.to(a.device())));
}

/// nlohmann writes NaN/Inf as null; a figure that was not finite comes back as NaN.
double figure_from(const json& j) {
  return j.is_null() ? std::numeric_limits<double>::quiet_NaN() : j.get<double>();
}

json reports_json(const std::map<std::string, LinearReport>& reports) {
  json out = json::object();
  for (const auto& [pass, r] : reports) {
    json figures = json::object(), notes = json::object(), flags = json::object();
    for (const auto& [k, v] : r.figures) figures[k] = v;
    for (const auto& [k, v] : r.notes) notes[k] = v;
    for (const auto& [k, v] : r.flags) flags[k] = v;
    out[pass] = {{"figures", figures}, {"notes", notes}, {"flags", flags}};
  }
  return out;
}

std::map<std::string, LinearReport> reports_from(const json& j) {
  std::map<std::string, LinearReport> out;
  for (const auto& [pass, r] : j.items()) {
    LinearReport& report = out[pass];
    for (const auto& [k, v] : r.at("figures").items()) report.figures[k] = figure_from(v);
    for (const auto& [k, v] : r.at("notes").items()) report.notes[k] = v.get<std::string>();
    for (const auto& [k, v] : r.at("flags").items()) report.flags[k] = v.get<bool>();
  }
  return out;
}

void put(core::NamedTensors& tensors, const std::string& name, const at::Tensor& t) {
  if (t.defined()) tensors.emplace_back(name, t);
}

}  // namespace

LayerCheckpoints::LayerCheckpoints(std::string dir, std::string fingerprint)
    : dir_(std::move(dir)), fingerprint_(std::move(fingerprint)) {
  fs::create_directories(dir_);
  // A kill during a save leaves its temporary file behind; the renamed files are all that count.
  for (const auto& entry : fs::directory_iterator(dir_)) {
    if (entry.path().filename().string().find(".tmp.") != std::string::npos) {
      std::error_code ignored;
      fs::remove(entry.path(), ignored);
    }
  }
}

std::string LayerCheckpoints::layer_path(int64_t index) const {
  return (fs::path(dir_) / fmt::format("layer-{:05d}.safetensors", index)).string();
}

std::string LayerCheckpoints::inputs_path(int64_t index) const {
  return (fs::path(dir_) / fmt::format("inputs-{:05d}.safetensors", index)).string();
}

int64_t LayerCheckpoints::last_complete() const {
  int64_t last = -1;
  for (const auto& entry : fs::directory_iterator(dir_)) {
    const std::string name = entry.path().filename().string();
    int64_t index = -1;
    if (std::sscanf(name.c_str(), "inputs-%ld.safetensors", &index) == 1 &&
        name == fmt::format("inputs-{:05d}.safetensors", index))
      last = std::max(last, index);
  }
  for (int64_t i = 0; i <= last; ++i) {
    CALQ_CHECK(fs::exists(layer_path(i)),
               "{}: the state of layer {} is missing, but layer {} is complete; expected every "
               "layer file up to it (remove the folder to start over)",
               dir_, i, last);
  }
  if (last >= 0) {
    const core::SafetensorsFile file(inputs_path(last));
    const auto it = file.metadata().find(kMetaKey);
    const std::string saved = it == file.metadata().end() ? "" : it->second;
    CALQ_CHECK(saved == fingerprint_,
               "{}: saved by a different run ({}); this one is {}; expected the same recipe, "
               "overrides, calibration windows, batch size, device and dtype",
               inputs_path(last), saved.empty() ? "no fingerprint" : saved, fingerprint_);
  }
  return last;
}

void LayerCheckpoints::save(int64_t index, core::DecoderLayer& layer,
                            const std::map<std::string, LinearState>& states,
                            const std::vector<std::unique_ptr<Pass>>& passes,
                            const std::map<std::string, double>& pass_seconds,
                            const at::Tensor& next_inputs) {
  const auto start = std::chrono::steady_clock::now();
  core::NamedTensors tensors;
  json linears = json::object();
  for (const std::string& name : layer.linear_names()) {
    const core::Linear& linear = layer.linear(name);
    const auto state = states.find(name);
    std::string weight = "dense";
    if (state != states.end() && state->second.quantized &&
        same_bits(linear.weight, state->second.quantized->dequantize().to(linear.weight.scalar_type())))
      weight = "codes";
    else if (state != states.end() && state->second.fp_quantized &&
             same_bits(linear.weight,
                       state->second.fp_quantized->dequantize().to(linear.weight.scalar_type())))
      weight = "fp_values";
    if (weight == "dense") put(tensors, "linear." + name + ".weight", linear.weight);
    put(tensors, "linear." + name + ".bias", linear.bias);
    // Each extension saves itself: its settings here, its tensors as linear.<name>.<kind>.<key>.
    json extensions = json::array();
    for (const auto& extension : linear.extensions()) {
      const std::string kind(extension->kind());
      const core::ExtensionState saved = extension->save();
      extensions.push_back({{"kind", kind}, {"settings", json::parse(saved.settings)}});
      for (const auto& [key, t] : saved.tensors)
        put(tensors, fmt::format("linear.{}.{}.{}", name, kind, key), t);
    }
    linears[name] = {{"weight", weight}, {"extensions", extensions}};
  }
  for (const std::string& name : layer.norm_names()) {
    put(tensors, "norms." + name + ".weight", layer.norm(name).weight);
    put(tensors, "norms." + name + ".bias", layer.norm(name).bias);
  }
  json state_json = json::object();
  for (const auto& [name, state] : states) {
    json entry = {{"reports", reports_json(state.reports)}, {"quantized", nullptr}, {"fp", nullptr}};
    if (const auto& q = state.quantized) {
      entry["quantized"] = {{"bits", q->bits},
                            {"grid", std::string(core::grid_name(q->grid))},
                            {"granularity", std::string(core::granularity_name(q->granularity))},
                            {"group_size", q->group_size},
                            {"scale_dtype", std::string(core::dtype_name(core::from_scalar_type(q->scale_dtype)))}};
      put(tensors, "state." + name + ".codes", q->codes);  // as held: compact or int32
      put(tensors, "state." + name + ".scales", q->scales);
      put(tensors, "state." + name + ".zeros", q->zeros);
      put(tensors, "state." + name + ".g_idx", q->g_idx);
    }
    if (const auto& f = state.fp_quantized) {
      entry["fp"] = {{"format", std::string(core::fp_format_name(f->format))},
                     {"group_size", f->group_size}};
      put(tensors, "state." + name + ".fp_values", f->values);
      put(tensors, "state." + name + ".fp_scales", f->scales);
      put(tensors, "state." + name + ".fp_g_idx", f->g_idx);
    }
    state_json[name] = entry;
  }
  json carries = json::object();
  for (const auto& pass : passes) {
    PassCarry carry = pass->carry();
    if (carry.json.empty() && carry.tensors.empty()) continue;
    carries[pass->name()] = carry.json;
    for (const auto& [key, t] : carry.tensors) put(tensors, fmt::format("carry.{}.{}", pass->name(), key), t);
  }
  const json meta = {{"version", kVersion},      {"fingerprint", fingerprint_},
                     {"layer", index},           {"linears", linears},
                     {"states", state_json},     {"carries", carries},
                     {"pass_seconds", pass_seconds}};
  core::write_safetensors(layer_path(index), tensors, {{kMetaKey, meta.dump()}});
  // The inputs file marks the layer complete: written after the layer file, then the previous
  // inputs (no longer needed) go.
  core::NamedTensors inputs;
  put(inputs, "inputs", next_inputs);
  core::write_safetensors(inputs_path(index), inputs, {{kMetaKey, fingerprint_}});
  if (index > 0) {
    std::error_code ignored;
    fs::remove(inputs_path(index - 1), ignored);
  }
  log::debug("layer {}: resume state saved in {:.2f} s", index,
             std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
}

std::map<std::string, LinearState> LayerCheckpoints::restore(
    int64_t index, core::DecoderLayer& layer, std::vector<std::unique_ptr<Pass>>* passes,
    std::map<std::string, double>* pass_seconds) const {
  const core::SafetensorsFile file(layer_path(index));
  const auto meta_it = file.metadata().find(kMetaKey);
  CALQ_CHECK(meta_it != file.metadata().end(), "{}: no {} metadata; expected a calq resume state",
             file.path(), kMetaKey);
  const json meta = core::parse_json_bounded(meta_it->second, layer_path(index),
                                            {"layer state metadata", "the JSON calq wrote"});
  CALQ_CHECK(meta.at("version").get<int>() == kVersion && meta.at("layer").get<int64_t>() == index,
             "{}: resume state version {} of layer {}; expected version {} of layer {} (an older calq "
             "wrote it? remove the folder to start over)", file.path(),
             core::quote_json(meta.at("version")), core::quote_json(meta.at("layer")), kVersion, index);
  const at::Device device = layer.linear(layer.linear_names().front()).weight.device();
  const auto load = [&](const std::string& name) {
    return file.contains(name) ? file.load(name).to(device) : at::Tensor();
  };

  std::map<std::string, LinearState> states;
  for (const auto& [name, entry] : meta.at("states").items()) {
    LinearState& state = states[name];
    state.reports = reports_from(entry.at("reports"));
    if (const json& q = entry.at("quantized"); !q.is_null()) {
      core::QuantizedTensor t;
      t.codes = load("state." + name + ".codes");
      t.scales = load("state." + name + ".scales");
      t.zeros = load("state." + name + ".zeros");
      t.g_idx = load("state." + name + ".g_idx");
      t.bits = q.at("bits").get<int>();
      t.grid = core::parse_grid(q.at("grid").get<std::string>());
      t.granularity = core::parse_granularity(q.at("granularity").get<std::string>(),
                                              file.path() + ": state." + name + ".granularity");
      t.group_size = q.at("group_size").get<int64_t>();
      const std::string scale_dtype = q.at("scale_dtype").get<std::string>();
      const auto stored = core::dtype_from_name(scale_dtype);
      CALQ_CHECK(stored.has_value(), "{}: state.{}.scale_dtype \"{}\"; expected a safetensors dtype "
                 "name such as F16", file.path(), name, scale_dtype);
      t.scale_dtype = core::to_scalar_type(*stored);
      state.quantized = std::move(t);
    }
    if (const json& f = entry.at("fp"); !f.is_null()) {
      core::FpQuantized t;
      t.values = load("state." + name + ".fp_values");
      t.scales = load("state." + name + ".fp_scales");
      t.g_idx = load("state." + name + ".fp_g_idx");
      t.format = core::parse_fp_format(f.at("format").get<std::string>());
      t.group_size = f.at("group_size").get<int64_t>();
      state.fp_quantized = std::move(t);
    }
  }

  for (const auto& [name, entry] : meta.at("linears").items()) {
    core::Linear& linear = layer.linear(name);
    const c10::ScalarType dtype = linear.weight.scalar_type();
    const std::string weight = entry.at("weight").get<std::string>();
    if (weight == "codes") {
      linear.weight = states.at(name).quantized->dequantize().to(dtype);
    } else if (weight == "fp_values") {
      linear.weight = states.at(name).fp_quantized->dequantize().to(dtype);
    } else {
      linear.weight = load("linear." + name + ".weight");
    }
    linear.bias = load("linear." + name + ".bias");
    std::vector<std::shared_ptr<const core::LinearExtension>> extensions;
    for (const json& saved : entry.at("extensions")) {
      const std::string kind = saved.at("kind").get<std::string>();
      core::ExtensionState state{saved.at("settings").dump(), {}};
      const std::string prefix = fmt::format("linear.{}.{}.", name, kind);
      for (const std::string& t : file.names()) {
        if (t.rfind(prefix, 0) == 0) state.tensors[t.substr(prefix.size())] = load(t);
      }
      try {
        extensions.push_back(core::load_linear_extension(kind, state));
      } catch (const Error& e) {
        throw Error(fmt::format("{}: {}: {}", file.path(), name, e.message()));
      }
    }
    linear.set_extensions(std::move(extensions));
  }
  for (const std::string& name : layer.norm_names()) {
    layer.norm(name).weight = load("norms." + name + ".weight");
    layer.norm(name).bias = load("norms." + name + ".bias");
  }

  if (passes != nullptr) {
    const json& carries = meta.at("carries");
    for (auto& pass : *passes) {
      PassCarry carry;
      if (const auto it = carries.find(pass->name()); it != carries.end())
        carry.json = it->get<std::string>();
      const std::string prefix = fmt::format("carry.{}.", pass->name());
      for (const std::string& t : file.names()) {
        if (t.rfind(prefix, 0) == 0) carry.tensors[t.substr(prefix.size())] = load(t);
      }
      if (!carry.json.empty() || !carry.tensors.empty()) pass->restore(carry);
    }
  }
  if (pass_seconds != nullptr) {
    *pass_seconds = meta.at("pass_seconds").get<std::map<std::string, double>>();
  }
  return states;
}

at::Tensor LayerCheckpoints::next_inputs(int64_t index) const {
  const core::SafetensorsFile file(inputs_path(index));
  return file.contains("inputs") ? file.load("inputs") : at::Tensor();
}

}  // namespace calq::algorithms
