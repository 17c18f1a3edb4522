#include "core/checkpoint/lora_adapter.h"

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "core/did_you_mean.h"
#include "core/error.h"
#include "core/io/json_text.h"
#include "core/io/atomic_file.h"
#include "core/io/safetensors.h"
#include "core/log.h"
#include "core/model/low_rank.h"
#include "core/model/model.h"
#include "core/shape_text.h"

namespace calq::core {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

constexpr const char* kConfigFile = "adapter_config.json";
constexpr const char* kWeightsFile = "adapter_model.safetensors";
constexpr const char* kPrefix = "base_model.model.";  // PEFT's wrapper around the HF model

struct Target {
  Linear* linear;
  int64_t layer;
  std::string name;
};

/// Every linear of the model by the module name PEFT matches (hf_module_name of its checkpoint
/// name, Linear::source); in a wrapped checkpoint (multimodal Gemma 3) also by the checkpoint
/// name, which adapters written before calq used transformers 5's names still carry.
std::map<std::string, Target> linears_by_module(Model& model) {
  std::map<std::string, Target> out;
  for (int64_t i = 0; i < model.n_layers(); ++i) {
    DecoderLayer& layer = model.layer(i);
    for (const std::string& name : layer.linear_names()) {
      Linear& l = layer.linear(name);
      if (l.source.empty()) continue;
      out.emplace(hf_module_name(model.config(), l.source), Target{&l, i, name});
      out.emplace(l.source, Target{&l, i, name});
    }
  }
  return out;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}


Json read_config(const fs::path& file) {
  CALQ_CHECK(fs::exists(file), "{}: missing; expected a PEFT adapter directory with {} and {}",
             file.string(), kConfigFile, kWeightsFile);
  core::JsonReadOptions read;
  read.what = "adapter config";
  read.expected = "a PEFT adapter_config.json";
  const Json config = core::read_json_file(file.string(), read);
  CALQ_CHECK(config.is_object(), "{}: expected a JSON object", file.string());
  return config;
}

template <typename T>
T config_value(const Json& config, const fs::path& file, const char* key, T fallback) {
  if (!config.contains(key) || config[key].is_null()) return fallback;
  try {
    return config[key].get<T>();
  } catch (const Json::exception&) {
    fail("{}: {}: {} has the wrong type", file.string(), key, core::quote_json(config[key]));
  }
}

}  // namespace

std::string AdapterResult::json() const {
  return Json{{"format", "peft-lora"}, {"path", path}, {"rank", rank}, {"linears", linears},
              {"bytes", bytes}}.dump();
}

bool has_low_rank(Model& model) {
  for (int64_t i = 0; i < model.n_layers(); ++i) {
    DecoderLayer& layer = model.layer(i);
    for (const std::string& name : layer.linear_names()) {
      if (layer.linear(name).find<LowRank>()) return true;
    }
  }
  return false;
}

AdapterResult write_lora_adapter(Model& model, const std::string& dir, const std::string& base_model) {
  const fs::path final_path = fs::absolute(dir).lexically_normal();
  AdapterResult result;
  result.path = final_path.string();
  NamedTensors tensors;
  std::vector<std::string> modules;
  for (int64_t i = 0; i < model.n_layers(); ++i) {
    DecoderLayer& layer = model.layer(i);
    for (const std::string& name : layer.linear_names()) {
      const Linear& l = layer.linear(name);
      const LowRank* low_rank = l.find<LowRank>();
      if (!low_rank) continue;
      CALQ_CHECK(!l.source.empty(),
                 "adapter {}: layer {} {} has no module of its own in the checkpoint (GPT-2 "
                 "fuses q, k, v in c_attn); a LoRA adapter cannot name it", dir, i, name);
      const int64_t rank = low_rank->a.size(0);
      CALQ_CHECK(result.rank == 0 || rank == result.rank,
                 "adapter {}: {} has rank {} but other linears rank {}; expected one rank", dir,
                 l.source, rank, result.rank);
      result.rank = rank;
      const c10::ScalarType dtype = low_rank->stored_dtype;
      // PEFT matches the modules transformers builds, not the checkpoint's names.
      const std::string module = hf_module_name(model.config(), l.source);
      tensors.emplace_back(kPrefix + module + ".lora_A.weight",
                           low_rank->a.to(at::kCPU, dtype).contiguous());
      tensors.emplace_back(kPrefix + module + ".lora_B.weight",
                           low_rank->b.to(at::kCPU, dtype).contiguous());
      modules.push_back(module);
      ++result.linears;
    }
  }
  CALQ_CHECK(result.linears > 0, "adapter {}: no linear carries low-rank factors; expected a "
             "lorc pass in the run", dir);
  for (const auto& [name, t] : tensors) result.bytes += t.numel() * static_cast<int64_t>(t.element_size());

  // Full module names: PEFT matches a target_modules entry by equality or "." suffix, so these
  // select exactly the linears that have factors.
  const Json config = {{"peft_type", "LORA"},
                       {"task_type", "CAUSAL_LM"},
                       {"base_model_name_or_path", base_model},
                       {"r", result.rank},
                       {"lora_alpha", result.rank},
                       {"lora_dropout", 0.0},
                       {"target_modules", modules},
                       {"bias", "none"},
                       {"fan_in_fan_out", false},
                       {"use_rslora", false},
                       {"use_dora", false},
                       {"inference_mode", true},
                       {"init_lora_weights", true}};

  fs::create_directories(final_path.parent_path());
  const fs::path tmp = final_path.parent_path() /
                       fmt::format(".{}.calq-tmp-{}", final_path.filename().string(), static_cast<long>(::getpid()));
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  try {
    write_safetensors((tmp / kWeightsFile).string(), tensors);
    write_string_atomically((tmp / kConfigFile).string(), config.dump(2) + "\n");
    publish_directory(tmp.string(), final_path.string());
  } catch (...) {
    std::error_code ignored;
    fs::remove_all(tmp, ignored);
    throw;
  }
  log::info("save: LoRA adapter (rank {}, {} linears) written to {}", result.rank, result.linears,
            result.path);
  return result;
}

AdapterResult load_lora_adapter(Model& model, const std::string& dir) {
  const fs::path root(dir);
  CALQ_CHECK(fs::is_directory(root), "{}: no such directory; expected a PEFT adapter directory "
             "with {} and {}", dir, kConfigFile, kWeightsFile);
  const fs::path config_file = root / kConfigFile;
  const Json config = read_config(config_file);
  const std::string peft_type = config_value<std::string>(config, config_file, "peft_type", "");
  CALQ_CHECK(peft_type == "LORA", "{}: peft_type \"{}\"; expected LORA", config_file.string(), peft_type);
  const int64_t r = config_value<int64_t>(config, config_file, "r", 0);
  CALQ_CHECK(r > 0, "{}: r: {}; expected a positive rank", config_file.string(), r);
  const double alpha = config_value<double>(config, config_file, "lora_alpha", static_cast<double>(r));
  CALQ_CHECK(!config_value<bool>(config, config_file, "fan_in_fan_out", false),
             "{}: fan_in_fan_out: true (Conv1D-layout weights); expected false", config_file.string());
  CALQ_CHECK(!config_value<bool>(config, config_file, "use_dora", false),
             "{}: use_dora: true; calq applies plain LoRA only; expected false", config_file.string());
  const std::string bias = config_value<std::string>(config, config_file, "bias", "none");
  CALQ_CHECK(bias == "none", "{}: bias \"{}\"; calq attaches no adapter biases; expected none",
             config_file.string(), bias);
  CALQ_CHECK(!config.contains("rank_pattern") || config["rank_pattern"].empty(),
             "{}: rank_pattern is set; calq reads one rank r for every module; expected none",
             config_file.string());
  CALQ_CHECK(!config.contains("alpha_pattern") || config["alpha_pattern"].empty(),
             "{}: alpha_pattern is set; expected one lora_alpha for every module", config_file.string());
  const bool rslora = config_value<bool>(config, config_file, "use_rslora", false);
  const double scaling = rslora ? alpha / std::sqrt(static_cast<double>(r)) : alpha / static_cast<double>(r);

  const fs::path weights_file = root / kWeightsFile;
  CALQ_CHECK(fs::exists(weights_file), "{}: missing; expected the adapter's weights in "
             "safetensors (adapter_model.bin is not read)", weights_file.string());
  const SafetensorsFile file(weights_file.string());

  std::map<std::string, Target> targets = linears_by_module(model);
  std::vector<std::string> known;
  for (const auto& [source, t] : targets) known.push_back(source);
  struct Pair {
    at::Tensor a, b;
  };
  std::map<std::string, Pair> pairs;
  for (const std::string& key : file.names()) {
    const bool is_a = ends_with(key, ".lora_A.weight");
    CALQ_CHECK(key.rfind(kPrefix, 0) == 0 && (is_a || ends_with(key, ".lora_B.weight")),
               "{}: tensor \"{}\": expected base_model.model.<module>.lora_A.weight or .lora_B.weight",
               weights_file.string(), key);
    const size_t begin = std::string(kPrefix).size();
    const std::string source = key.substr(begin, key.size() - begin - std::string(".lora_A.weight").size());
    if (!targets.count(source)) {
      const std::string near = closest_match(source, known);
      fail("{}: tensor \"{}\": the model has no linear \"{}\"{}", weights_file.string(), key, source,
           near.empty() ? "" : fmt::format("; did you mean \"{}\"?", near));
    }
    (is_a ? pairs[source].a : pairs[source].b) = file.load(key);
  }
  CALQ_CHECK(!pairs.empty(), "{}: holds no tensors; expected lora_A/lora_B pairs", weights_file.string());

  AdapterResult result;
  result.path = fs::absolute(root).lexically_normal().string();
  result.rank = r;
  for (const auto& [source, p] : pairs) {
    CALQ_CHECK(p.a.defined() && p.b.defined(), "{}: {} has only lora_{}; expected both lora_A and lora_B",
               weights_file.string(), source, p.a.defined() ? "A" : "B");
    Linear& l = *targets.at(source).linear;
    const int64_t out = l.weight.size(0), in = l.weight.size(1);
    CALQ_CHECK(p.a.dim() == 2 && p.a.size(1) == in && p.a.size(0) == r,
               "{}: {}.lora_A.weight is {}; expected [{}, {}] (r, in_features)", weights_file.string(),
               source, shape_text(p.a.sizes()), r, in);
    CALQ_CHECK(p.b.dim() == 2 && p.b.size(0) == out && p.b.size(1) == r,
               "{}: {}.lora_B.weight is {}; expected [{}, {}] (out_features, r)", weights_file.string(),
               source, shape_text(p.b.sizes()), out, r);
    CALQ_CHECK(at::isFloatingType(p.a.scalar_type()) && at::isFloatingType(p.b.scalar_type()),
               "{}: {}: lora factors are {} / {}; expected floating point", weights_file.string(),
               source, c10::toString(p.a.scalar_type()), c10::toString(p.b.scalar_type()));
    auto f = std::make_shared<LowRank>();
    f->stored_dtype = p.a.scalar_type();
    f->a = p.a.to(l.weight.device(), l.weight.scalar_type());
    f->b = p.b.to(at::kFloat);
    if (scaling != 1.0) f->b = f->b * scaling;
    f->b = f->b.to(l.weight.device(), l.weight.scalar_type());
    l.put(std::move(f));
    ++result.linears;
    result.bytes += (p.a.numel() * static_cast<int64_t>(p.a.element_size())) +
                    (p.b.numel() * static_cast<int64_t>(p.b.element_size()));
  }
  log::info("adapter {}: rank {} (scaling {:g}) on {} linears", result.path, r, scaling, result.linears);
  return result;
}

}  // namespace calq::core
