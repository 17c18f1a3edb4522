#include "core/checkpoint/checkpoint_weights.h"

#include <filesystem>
#include <fstream>
#include <set>
#include <vector>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "core/checkpoint/layout_check.h"
#include "core/checkpoint/packed_linear.h"
#include "core/error.h"
#include "core/io/json_text.h"

namespace calq::core {
namespace {

namespace fs = std::filesystem;

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

fs::path dir_of(const std::string& path) {
  const fs::path p(path);
  return fs::is_directory(p) ? p : p.parent_path();
}

// The tensors a packed linear stores beside (or instead of) <prefix>.weight.
const char* const kPackedSuffixes[] = {".qweight",      ".qzeros",           ".scales",
                                       ".g_idx",        ".weight_packed",    ".weight_scale",
                                       ".weight_zero_point", ".weight_shape", ".weight_g_idx"};

/// Presents a packed checkpoint's quantized linears as float <prefix>.weight tensors.
class PackedWeights final : public WeightSource {
 public:
  PackedWeights(std::shared_ptr<WeightSource> base, PackedLayout layout)
      : base_(std::move(base)), layout_(std::move(layout)) {
    const std::string marker =
        layout_.format == SaveFormat::CompressedTensors ? ".weight_scale" : ".qweight";
    for (const std::string& name : base_->names()) {
      if (ends_with(name, marker)) prefixes_.insert(name.substr(0, name.size() - marker.size()));
    }
    for (const std::string& name : base_->names()) {
      const size_t dot = name.rfind('.');
      bool aux = false;
      if (dot != std::string::npos && prefixes_.count(name.substr(0, dot))) {
        const std::string suffix = name.substr(dot);
        for (const char* packed : kPackedSuffixes) aux = aux || suffix == packed;
        aux = aux || suffix == ".weight";  // int-quantized stores the int8 codes as .weight
      }
      if (!aux) names_.insert(name);
    }
    for (const std::string& prefix : prefixes_) names_.insert(prefix + ".weight");
  }

  const std::string& path() const override { return base_->path(); }
  bool contains(const std::string& name) const override { return names_.count(name) != 0; }
  std::vector<std::string> names() const override { return {names_.begin(), names_.end()}; }

  std::vector<int64_t> shape(const std::string& name) const override {
    const std::string prefix = packed_prefix(name);
    if (prefix.empty()) return base_->shape(name);
    switch (layout_.format) {
      case SaveFormat::Gptq: {
        const auto s = base_->shape(prefix + ".qweight");  // [in · bits / 32, out]
        if (layout_.g_idx_stored || base_->contains(prefix + ".g_idx"))
          return {s.at(1), base_->shape(prefix + ".g_idx").at(0)};
        return {s.at(1), s.at(0) * 32 / layout_.bits};  // no g_idx: AutoRound's own format
      }
      case SaveFormat::Awq: {
        const auto s = base_->shape(prefix + ".qweight");
        return {s.at(1) * 8, s.at(0)};
      }
      case SaveFormat::CompressedTensors:
        if (base_->contains(prefix + ".weight_shape")) {
          const at::Tensor s = base_->load(prefix + ".weight_shape").to(at::kLong);
          return {s[0].item<int64_t>(), s[1].item<int64_t>()};
        }
        return base_->shape(prefix + ".weight");
      case SaveFormat::Fake:
        break;
    }
    return base_->shape(name);
  }

  at::Tensor load(const std::string& name) const override {
    const std::string prefix = packed_prefix(name);
    if (prefix.empty()) return base_->load(name);
    return unpack_linear(layout_, *base_, prefix).dequantize();
  }

  std::optional<ActQuantSpec> input_quant(const std::string& prefix) const override {
    if (prefixes_.count(prefix) == 0) return std::nullopt;
    return layout_.activations;
  }

 private:
  /// The linear's prefix when `name` is a packed linear's weight, else "".
  std::string packed_prefix(const std::string& name) const {
    if (!ends_with(name, ".weight")) return "";
    const std::string prefix = name.substr(0, name.size() - 7);
    return prefixes_.count(prefix) != 0 ? prefix : "";
  }

  std::shared_ptr<WeightSource> base_;
  PackedLayout layout_;
  std::set<std::string> prefixes_;
  std::set<std::string> names_;
};

}  // namespace

std::optional<PackedLayout> read_packed_layout(const std::string& model_dir) {
  const fs::path config_path = dir_of(model_dir) / "config.json";
  if (!fs::exists(config_path)) return std::nullopt;
  JsonReadOptions read;
  read.what = "config";
  read.expected = "an HF config.json";
  const nlohmann::json config = read_json_file(config_path.string(), read);
  if (!config.contains("quantization_config") || config.at("quantization_config").is_null())
    return std::nullopt;
  return parse_quantization_config(config.at("quantization_config"), config_path.string());
}

std::shared_ptr<WeightSource> open_checkpoint_weights(const std::string& path) {
  std::shared_ptr<WeightSource> base = open_safetensors_source(path);
  std::optional<PackedLayout> layout = read_packed_layout(path);
  if (!layout) return base;
  // Before anything is dequantized: a config that disagrees with the tensors would decode to a
  // different model (or fail deep inside the unpacking) instead of being refused here.
  check_layout_against_tensors(*layout, *base, (dir_of(path) / "config.json").string());
  return std::make_shared<PackedWeights>(std::move(base), std::move(*layout));
}

QuantizedTensor read_packed_linear(const std::string& model_dir, const std::string& prefix) {
  const std::optional<PackedLayout> layout = read_packed_layout(model_dir);
  CALQ_CHECK(layout.has_value(), "{}: config.json declares no packed quantization_config",
             model_dir);
  return unpack_linear(*layout, *open_safetensors_source(model_dir), prefix);
}

}  // namespace calq::core
