// `calq inspect PATH`: what a model directory or file holds — architecture, parameter count,
// quantization config, and (with --tensors) every tensor's dtype and shape.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/checkpoint/checkpoint_weights.h"
#include "core/checkpoint/export_checkpoint.h"
#include "core/error.h"
#include "core/io/json_text.h"
#include "core/io/safetensors.h"
#include "core/model/model.h"
#include "core/model/model_config.h"
#include "core/tokenizer/tokenizer.h"

namespace calq::cli {
namespace {

namespace fs = std::filesystem;

struct InspectArgs {
  std::string path;
  bool tensors = false;
  bool json = false;
};

nlohmann::json describe_config(const core::ModelConfig& c) {
  return {{"model_type", c.model_type},     {"family", core::family_name(c.family)},
          {"layers", c.n_layers},           {"hidden", c.hidden_size},
          {"intermediate", c.intermediate_size}, {"heads", c.n_heads},
          {"kv_heads", c.n_kv_heads},       {"head_dim", c.head_dim},
          {"vocab", c.vocab_size},          {"max_positions", c.max_positions},
          {"tied_head", c.tie_word_embeddings}};
}

nlohmann::json describe_layout(const core::PackedLayout& l) {
  const char* format = core::save_format_name(l.format);
  std::string shown = l.format == core::SaveFormat::CompressedTensors
                          ? fmt::format("{} ({})", format, l.ct_format())
                          : std::string(format);
  if (!l.declared.empty()) shown = fmt::format("{} layout, declared {}", shown, l.declared);
  return {{"format", shown},
          {"bits", l.bits},
          {"group_size", l.group_size},
          {"sym", l.sym},
          {"act_order", l.act_order},
          {"activations", l.activations ? fmt::format("int{} {} dynamic", l.activations->bits,
                                                      core::act_granularity_name(l.activations->granularity))
                                        : std::string("none")}};
}

/// The linears of decoder layer 0 as the checkpoint reader sees them (packed ones dequantized).
std::vector<core::LinearShape> first_layer_linears(const std::string& dir) {
  const auto weights = core::open_checkpoint_weights(dir);
  std::vector<core::LinearShape> out;
  for (const std::string& name : weights->names()) {
    const size_t at = name.find(".layers.0.");
    if (at == std::string::npos || name.size() < 7 || name.compare(name.size() - 7, 7, ".weight") != 0)
      continue;
    const std::vector<int64_t> shape = weights->shape(name);
    if (shape.size() != 2) continue;
    out.push_back({name.substr(at + 10, name.size() - at - 17), shape[0], shape[1]});
  }
  return out;
}

int run_inspect(const InspectArgs& args) {
  nlohmann::json doc = {{"path", args.path}};
  const bool hf_dir = fs::is_directory(args.path) && fs::exists(fs::path(args.path) / "config.json");
  if (hf_dir) {
    const std::string config_path = (fs::path(args.path) / "config.json").string();
    doc["config"] = describe_config(core::read_hf_config(config_path));
    const nlohmann::json raw = core::read_json_file(config_path, {"config", "an HF config.json"});
    doc["quantization_config"] =
        raw.is_object() && raw.contains("quantization_config") ? raw["quantization_config"]
                                                               : nlohmann::json(nullptr);
    if (const auto layout = core::read_packed_layout(args.path)) {
      doc["quantization"] = describe_layout(*layout);
      doc["lint"] = core::kernel_lint(*layout, first_layer_linears(args.path));
    }
    const core::SafetensorsCheckpoint checkpoint(args.path);
    int64_t params = 0;
    uint64_t bytes = 0;
    nlohmann::json tensors = nlohmann::json::array();
    for (const std::string& name : checkpoint.names()) {
      const core::TensorInfo& info = checkpoint.info(name);
      params += info.numel();
      bytes += info.end - info.begin;
      if (args.tensors) {
        tensors.push_back({{"name", name},
                           {"dtype", std::string(core::dtype_name(info.dtype))},
                           {"shape", info.shape}});
      }
    }
    doc["tensor_count"] = checkpoint.names().size();
    doc["stored_elements"] = params;
    doc["bytes"] = bytes;
    if (args.tensors) doc["tensors"] = tensors;
  } else {
    core::LoadOptions load;
    load.path = args.path;
    load.load_tokenizer = false;
    auto model = core::load_model(load);
    doc["config"] = describe_config(model->config());
    doc["stored_elements"] = model->n_parameters();
    doc["quantization_config"] = nullptr;
  }

  if (args.json) {
    std::printf("%s\n", doc.dump(2).c_str());
    return 0;
  }
  const nlohmann::json& c = doc["config"];
  std::printf("%s\n", args.path.c_str());
  std::printf("  family        %s (model_type %s)\n", c["family"].get<std::string>().c_str(),
              c["model_type"].get<std::string>().c_str());
  std::printf("  layers        %lld, hidden %lld, intermediate %lld\n",
              c["layers"].get<long long>(), c["hidden"].get<long long>(),
              c["intermediate"].get<long long>());
  std::printf("  attention     %lld heads, %lld kv heads, head_dim %lld\n",
              c["heads"].get<long long>(), c["kv_heads"].get<long long>(),
              c["head_dim"].get<long long>());
  std::printf("  vocab         %lld (%s head)\n", c["vocab"].get<long long>(),
              c["tied_head"].get<bool>() ? "tied" : "untied");
  std::printf("  elements      %lld stored\n", doc["stored_elements"].get<long long>());
  if (doc.contains("quantization")) {
    const nlohmann::json& q = doc["quantization"];
    std::printf("  quantization  %s, %d-bit, group size %lld, %s, act-order %s, activations %s\n",
                q["format"].get<std::string>().c_str(), q["bits"].get<int>(),
                q["group_size"].get<long long>(), q["sym"].get<bool>() ? "sym" : "asym",
                q["act_order"].get<bool>() ? "yes" : "no", q["activations"].get<std::string>().c_str());
    for (const auto& w : doc["lint"]) std::printf("  lint          %s\n", w.get<std::string>().c_str());
    if (doc["lint"].empty()) std::printf("  lint          fast kernels apply (no findings)\n");
  } else {
    std::printf("  quantization  %s\n", doc["quantization_config"].is_null()
                                            ? "none (float checkpoint)"
                                            : core::quote_json(doc["quantization_config"], 400).c_str());
  }
  if (args.tensors) {
    for (const auto& t : doc["tensors"]) {
      std::printf("  %-60s %-5s %s\n", t["name"].get<std::string>().c_str(),
                  t["dtype"].get<std::string>().c_str(),
                  fmt::format("{}", t["shape"].get<std::vector<int64_t>>()).c_str());
    }
  }
  return 0;
}

}  // namespace

CommandRunner add_inspect_command(CLI::App& app) {
  auto args = std::make_shared<InspectArgs>();
  CLI::App* cmd = app.add_subcommand("inspect", "Architecture, sizes and quantization config");
  cmd->add_option("path", args->path, "HF model directory or llama2.c .bin")->required();
  cmd->add_flag("--tensors", args->tensors, "List every tensor with dtype and shape");
  cmd->add_flag("--json", args->json, "Print JSON instead of text");
  return [args] { return run_inspect(*args); };
}

}  // namespace calq::cli
