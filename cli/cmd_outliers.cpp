// `calq outliers MODEL --out DIR`: the same model with activation outliers, for SmoothQuant
// experiments on small models that have none (issue #4). In every layer a few input channels
// of each norm-fed group (norm → q,k,v; norm → gate,up / fc1) get γ[c] (and β[c]) multiplied by
// a factor and the matching weight columns of the linears reading that norm divided by it: the
// float function is unchanged, but those activation channels become `factor` times larger than
// their neighbours, as the outlier features of large LLMs are (Dettmers et al. 2022). A power of
// two (default 64) keeps the rewrite exact in float16/bfloat16 except for weights pushed below
// the smallest normal number. The channels are drawn once (seeded) and shared by all layers, as
// real outlier dimensions are.
#include <algorithm>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "calib/seeded_rng.h"
#include "cli/commands.h"
#include "core/error.h"
#include "core/io/atomic_file.h"
#include "core/io/output_dir.h"
#include "core/io/safetensors.h"
#include "core/log.h"
#include "core/model/model.h"
#include "core/model/model_config.h"
#include "core/model/norm_scaling.h"

namespace calq::cli {
namespace {

namespace fs = std::filesystem;

struct OutlierArgs {
  std::string model;
  std::string out;
  int channels = 4;
  double factor = 64.0;
  uint64_t seed = 0;
};

int run_outliers(const OutlierArgs& a) {
  const fs::path src(a.model);
  const fs::path config_path = src / "config.json";
  CALQ_CHECK(fs::is_directory(src) && fs::exists(config_path),
             "{}: expected an HF model directory with config.json", a.model);
  // The family's schema says which norms feed which linears and where each tensor lives.
  core::LoadOptions load;
  load.path = a.model;
  load.load_tokenizer = false;
  const std::unique_ptr<core::Model> model = core::load_model(load);
  const core::ModelConfig& config = model->config();
  CALQ_CHECK(a.channels >= 1 && a.channels <= config.hidden_size,
             "--channels: {} is out of range; expected 1 to hidden_size {}", a.channels,
             config.hidden_size);
  CALQ_CHECK(a.factor > 1.0, "--factor: {} must be above 1", a.factor);

  std::set<int64_t> picked;
  calib::SeededRng rng(a.seed);
  while (static_cast<int>(picked.size()) < a.channels) picked.insert(rng.uniform_int(0, config.hidden_size - 1));
  const std::vector<int64_t> channels(picked.begin(), picked.end());
  const at::Tensor index = at::tensor(channels, at::kLong);

  const core::SafetensorsCheckpoint checkpoint(src.string());
  std::map<std::string, at::Tensor> tensors;
  for (const std::string& name : checkpoint.names()) tensors[name] = checkpoint.load(name).clone();
  const auto tensor = [&](const std::string& name) -> at::Tensor& {
    const auto it = tensors.find(name);
    CALQ_CHECK(it != tensors.end(), "{}: no tensor \"{}\"", a.model, name);
    return it->second;
  };
  const auto scale = [&](const std::string& name, int64_t dim, double by) {
    at::Tensor& t = tensor(name);
    const at::Tensor picked_slice = t.index_select(dim, index).to(at::kFloat) * by;
    t.index_copy_(dim, index, picked_slice.to(t.scalar_type()));
  };
  const at::Tensor by = at::full({index.numel()}, a.factor, at::kDouble);
  for (int64_t layer = 0; layer < config.n_layers; ++layer) {
    const core::LayerSchema& schema = model->layer_schema(layer);
    for (const core::ScalingPair& pair : schema.norm_fed_pairs()) {
      const core::NormSpec& spec = schema.norm(pair.prev_op);
      for (const std::string& name : pair.linears) {
        CALQ_CHECK(!schema.linear(name).checkpoint.empty(),
                   "{}: layer {} {} is stored fused with its neighbours in this {} checkpoint; "
                   "calq outliers expects a separate tensor per linear", a.model, layer, name,
                   config.model_type);
      }
      // γ (and β) of the picked channels, rescaled however the norm applies its gain.
      at::Tensor& weight = tensor(spec.checkpoint + ".weight");
      core::Norm gain;
      gain.form = spec.form;
      gain.weight = weight.index_select(0, index);
      if (spec.bias()) gain.bias = tensor(spec.checkpoint + ".bias").index_select(0, index);
      core::multiply_norm_output(gain, by);
      weight.index_copy_(0, index, gain.weight);
      if (spec.bias()) tensor(spec.checkpoint + ".bias").index_copy_(0, index, gain.bias);
      for (const std::string& name : pair.linears)
        scale(schema.linear(name).checkpoint + ".weight", 1, 1.0 / a.factor);
    }
  }

  // Everything goes to a temporary sibling first; the final name appears only when complete.
  const fs::path out = core::new_output_dir(a.out, "--out");
  const fs::path tmp = core::temp_sibling(out);
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  core::TempDirGuard guard{tmp};
  for (const auto& entry : fs::directory_iterator(src)) {
    const std::string file = entry.path().filename().string();
    // The model's own files only (config, generation config, tokenizer), not data beside it.
    const std::string ext = entry.path().extension().string();
    const bool model_file = ext == ".json" || ext == ".model" || file == "merges.txt";
    if (!entry.is_regular_file() || !model_file || file.find(".safetensors") != std::string::npos)
      continue;
    fs::copy_file(entry.path(), tmp / file);
  }
  core::NamedTensors named(tensors.begin(), tensors.end());
  core::write_safetensors((tmp / "model.safetensors").string(), named);
  nlohmann::json info = {{"source", fs::absolute(src).string()},
                         {"channels", channels},
                         {"factor", a.factor},
                         {"seed", a.seed},
                         {"note", "calq outliers: norm weights x factor, reading linears' input "
                                  "columns / factor; same float function"}};
  core::write_string_atomically((tmp / "calq_outliers.json").string(), info.dump(2) + "\n");
  core::write_output_marker(tmp, "outliers");
  fs::rename(tmp, out);
  guard.committed = true;
  log::info("wrote {}: channels {} of {} scaled by {} in {} layers", a.out,
            fmt::join(channels, ","), config.hidden_size, a.factor, config.n_layers);
  return 0;
}

}  // namespace

CommandRunner add_outliers_command(CLI::App& app) {
  auto args = std::make_shared<OutlierArgs>();
  CLI::App* cmd = app.add_subcommand(
      "outliers", "Copy an HF model with activation outlier channels (same float function)");
  cmd->add_option("model", args->model, "HF model directory whose linears are stored apart (llama, mistral, qwen2, opt)")
      ->required();
  cmd->add_option("--out", args->out, "New model directory")->required();
  cmd->add_option("--channels", args->channels, "Outlier channels per norm (default 4)");
  cmd->add_option("--factor", args->factor, "Scale of the outlier channels (default 64)");
  cmd->add_option("--seed", args->seed, "Seed of the channel draw (default 0)");
  return [args] { return run_outliers(*args); };
}

}  // namespace calq::cli
