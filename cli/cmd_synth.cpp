// `calq synth`: a random HF Llama checkpoint of any shape, for scale and memory tests (issue #8)
// without downloading a real model. Shards hold one decoder layer each (the embedding, final norm
// and head go in the last), so writing a 7B-shaped model holds one layer in memory.
//
// The numbers are shaped like a trained model's where quantization cares: linears N(0, 0.02²)
// (the HF initializer range); RMSNorm gains around 1; and a few input channels whose norm gain is
// `outlier_scale` times larger in every layer, so those activation channels stand out by that
// factor as the outlier features of large LLMs do (the channels are shared by all layers, as
// real outlier dimensions are). The tokenizer is byte-level BPE without merges: every byte is
// one token, so any text calibrates it.
#include <algorithm>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/error.h"
#include "core/io/atomic_file.h"
#include "core/io/output_dir.h"
#include "core/io/sharded_writer.h"
#include "core/log.h"
#include "core/model/llama.h"
#include "core/model/model_config.h"
#include "core/tokenizer/byte_level.h"

namespace calq::cli {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

constexpr double kWeightStd = 0.02;     // HF LlamaConfig.initializer_range
constexpr double kNormGainStd = 0.05;   // gains spread around 1
constexpr int64_t kByteTokens = 256;    // the tokenizer's vocabulary

struct SynthArgs {
  std::string family = "llama";
  int64_t hidden = 0;
  int64_t intermediate = 0;
  int64_t layers = 0;
  int64_t heads = 0;
  int64_t kv_heads = 0;
  int64_t vocab = 32000;
  std::string dtype = "float16";
  std::string out;
  int outlier_channels = 4;
  double outlier_scale = 20.0;
  uint64_t seed = 0;
};

class Synthesizer {
 public:
  Synthesizer(const SynthArgs& a, c10::ScalarType dtype)
      : a_(a), dtype_(dtype), gen_(at::detail::createCPUGenerator(a.seed)) {
    std::set<int64_t> picked;
    while (static_cast<int>(picked.size()) < a.outlier_channels)
      picked.insert(at::randint(a.hidden, {1}, gen_, at::kLong).item<int64_t>());
    outliers_.assign(picked.begin(), picked.end());
  }

  const std::vector<int64_t>& outliers() const { return outliers_; }

  at::Tensor linear(int64_t out, int64_t in) {
    return (at::randn({out, in}, gen_, at::kFloat) * kWeightStd).to(dtype_);
  }

  at::Tensor norm_gain() {
    at::Tensor g = at::randn({a_.hidden}, gen_, at::kFloat) * kNormGainStd + 1.0;
    for (int64_t c : outliers_)
      g[c] = g[c] * a_.outlier_scale;
    return g.to(dtype_);
  }

  /// Layer i's tensors by the family's schema (llama.cpp), in execution order: each norm
  /// before the first linear reading it (the draw order, so a seed gives the same model).
  core::NamedTensors layer(const core::LayerSchema& schema) {
    core::NamedTensors t;
    std::set<std::string> written;
    for (const core::LinearSpec& l : schema.linears) {
      if (!l.input_norm.empty() && written.insert(l.input_norm).second)
        t.emplace_back(schema.norm(l.input_norm).checkpoint + ".weight", norm_gain());
      CALQ_ASSERT(!l.bias && !l.checkpoint.empty(), "synth: {} needs a bias or is fused", l.name);
      t.emplace_back(l.checkpoint + ".weight", linear(l.out, l.in));
    }
    return t;
  }

  core::NamedTensors outer() {
    core::NamedTensors t;
    t.emplace_back("model.embed_tokens.weight", linear(a_.vocab, a_.hidden));
    t.emplace_back("model.norm.weight", (at::randn({a_.hidden}, gen_, at::kFloat) * kNormGainStd + 1.0).to(dtype_));
    t.emplace_back("lm_head.weight", linear(a_.vocab, a_.hidden));
    return t;
  }

 private:
  const SynthArgs& a_;
  c10::ScalarType dtype_;
  at::Generator gen_;
  std::vector<int64_t> outliers_;
};

c10::ScalarType storage_dtype(const std::string& name) {
  if (name == "float16") return at::kHalf;
  if (name == "bfloat16") return at::kBFloat16;
  if (name == "float32") return at::kFloat;
  fail("--dtype: \"{}\"; expected float16, bfloat16 or float32", name);
}

Json config_json(const SynthArgs& a) {
  return {{"architectures", {"LlamaForCausalLM"}},
          {"model_type", "llama"},
          {"hidden_size", a.hidden},
          {"intermediate_size", a.intermediate},
          {"num_hidden_layers", a.layers},
          {"num_attention_heads", a.heads},
          {"num_key_value_heads", a.kv_heads},
          {"head_dim", a.hidden / a.heads},
          {"vocab_size", a.vocab},
          {"hidden_act", "silu"},
          {"rms_norm_eps", 1e-5},
          {"rope_theta", 10000.0},
          {"max_position_embeddings", 4096},
          {"attention_bias", false},
          {"mlp_bias", false},
          {"tie_word_embeddings", false},
          {"torch_dtype", a.dtype}};
}

/// Byte-level BPE with one token per byte and no merges (ids 0..255).
Json tokenizer_json() {
  Json vocab = Json::object();
  for (int b = 0; b < kByteTokens; ++b)
    vocab[core::byte_to_byte_level(static_cast<unsigned char>(b))] = b;
  return {{"version", "1.0"},
          {"added_tokens", Json::array()},
          {"normalizer", nullptr},
          {"pre_tokenizer",
           {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true},
            {"use_regex", true}}},
          {"post_processor", nullptr},
          {"decoder", {{"type", "ByteLevel"}}},
          {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", Json::array()}}}};
}

void check_args(const SynthArgs& a) {
  CALQ_CHECK(a.family == "llama", "--family: \"{}\" is not supported; expected llama", a.family);
  for (const auto& [flag, v] : {std::pair{"--hidden", a.hidden}, {"--intermediate", a.intermediate},
                                {"--layers", a.layers}, {"--heads", a.heads},
                                {"--kv-heads", a.kv_heads}, {"--vocab", a.vocab}})
    CALQ_CHECK(v > 0, "{}: {}; expected a positive number", flag, v);
  CALQ_CHECK(a.hidden % a.heads == 0, "--hidden {} is not a multiple of --heads {}", a.hidden, a.heads);
  CALQ_CHECK(a.heads % a.kv_heads == 0, "--heads {} is not a multiple of --kv-heads {}", a.heads,
             a.kv_heads);
  CALQ_CHECK(a.vocab >= kByteTokens, "--vocab: {}; expected at least {} (the byte tokenizer's)",
             a.vocab, kByteTokens);
  CALQ_CHECK(a.outlier_channels >= 0 && a.outlier_channels <= a.hidden,
             "--outlier-channels: {}; expected 0 to --hidden {}", a.outlier_channels, a.hidden);
  CALQ_CHECK(a.outlier_scale >= 1.0, "--outlier-scale: {}; expected at least 1", a.outlier_scale);
}

int run_synth(const SynthArgs& a) {
  check_args(a);
  const c10::ScalarType dtype = storage_dtype(a.dtype);
  const fs::path out = core::new_output_dir(a.out, "--out");
  // Everything goes to a temporary sibling first; the final name appears only when complete.
  const fs::path tmp = core::temp_sibling(out);
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  core::TempDirGuard guard{tmp};

  Synthesizer synth(a, dtype);
  core::ShardedWriter writer(tmp.string(), a.layers + 1);
  // The config it writes is the one the schema is read from: one description of the model.
  const std::string config_text = config_json(a).dump(2) + "\n";
  const core::ModelConfig config = core::parse_hf_config(config_text, (out / "config.json").string());
  for (int64_t i = 0; i < a.layers; ++i) {
    writer.write(i, synth.layer(core::llama_layer_schema(config, i)));
    log::info("synth: layer {}/{} written", i + 1, a.layers);
  }
  writer.write(a.layers, synth.outer());
  const int64_t bytes = writer.finish();
  core::write_string_atomically((tmp / "config.json").string(), config_text);
  core::write_string_atomically((tmp / "tokenizer.json").string(), tokenizer_json().dump() + "\n");
  const Json info = {{"generator", "calq synth"},
                     {"seed", a.seed},
                     {"weight_std", kWeightStd},
                     {"norm_gain_std", kNormGainStd},
                     {"outlier_channels", synth.outliers()},
                     {"outlier_scale", a.outlier_scale}};
  core::write_string_atomically((tmp / "calq_synth.json").string(), info.dump(2) + "\n");
  core::write_output_marker(tmp, "synth");
  fs::rename(tmp, out);
  guard.committed = true;
  log::info("wrote {}: {} layers, {:.2f} GB of {} tensors; outlier channels {}", a.out, a.layers,
            static_cast<double>(bytes) / 1e9, a.dtype, fmt::join(synth.outliers(), ","));
  return 0;
}

}  // namespace

CommandRunner add_synth_command(CLI::App& app) {
  auto args = std::make_shared<SynthArgs>();
  CLI::App* cmd =
      app.add_subcommand("synth", "Write a random HF Llama checkpoint of a given shape (scale tests)");
  cmd->add_option("--family", args->family, "Model family (llama)")->capture_default_str();
  cmd->add_option("--hidden", args->hidden, "hidden_size")->required();
  cmd->add_option("--intermediate", args->intermediate, "intermediate_size")->required();
  cmd->add_option("--layers", args->layers, "num_hidden_layers")->required();
  cmd->add_option("--heads", args->heads, "num_attention_heads")->required();
  cmd->add_option("--kv-heads", args->kv_heads, "num_key_value_heads (default: --heads)");
  cmd->add_option("--vocab", args->vocab, "vocab_size")->capture_default_str();
  cmd->add_option("--dtype", args->dtype, "Stored dtype: float16, bfloat16, float32")
      ->capture_default_str();
  cmd->add_option("--outlier-channels", args->outlier_channels,
                  "Input channels with large norm gains, shared by all layers")
      ->capture_default_str();
  cmd->add_option("--outlier-scale", args->outlier_scale, "Their gain factor")->capture_default_str();
  cmd->add_option("--seed", args->seed, "Random seed")->capture_default_str();
  cmd->add_option("--out", args->out, "New model directory")->required();
  return [args] {
    if (args->kv_heads == 0)
      args->kv_heads = args->heads;
    return run_synth(*args);
  };
}

}  // namespace calq::cli
