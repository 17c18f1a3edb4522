// `calq synth`: a random HF checkpoint of any shape and of any family in synth_families.h (Llama,
// Llama 3, Qwen3, Gemma 3), for scale and memory tests (issues #8, #19) without downloading a real
// model. Tensor names, shapes and norm forms come from the family's layer schema. Shards hold one
// decoder layer each (the embedding, final norm and head go in the last), so writing a 7B-shaped
// model holds one layer in memory.
//
// The numbers are shaped like a trained model's where quantization cares: linears N(0, 0.02²)
// (the HF initializer range); norm gains around 1 (the effective gain: a (1 + w) norm stores w
// around 0); and a few input channels whose gain in the norms that feed linears is
// `outlier_scale` times larger in every layer, so those activation channels stand out by that
// factor as the outlier features of large LLMs do (the channels are shared by all layers, as
// real outlier dimensions are). The tokenizer is byte-level BPE without merges: every byte is
// one token, so any text calibrates it. A --family llama model is byte for byte what calq synth
// wrote before families were added.
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
#include "cli/synth_families.h"
#include "cli/synth_presets.h"
#include "core/model/model_config.h"
#include "core/tokenizer/byte_level.h"

namespace calq::cli {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

constexpr double kNormGainStd = 0.05;   // gains spread around 1
constexpr int64_t kByteTokens = 256;    // the tokenizer's vocabulary

// As given on the command line; 0 / empty: not given (the preset's or family's value applies).
struct SynthArgs {
  std::string family;
  std::string preset;
  int64_t hidden = 0;
  int64_t intermediate = 0;
  int64_t layers = 0;
  int64_t heads = 0;
  int64_t kv_heads = 0;
  int64_t head_dim = 0;
  int64_t vocab = 0;
  bool tied = false, untied = false;
  std::string dtype = "float16";
  std::string out;
  int outlier_channels = 4;
  double outlier_scale = 20.0;
  double weight_std = 0.02;  // HF initializer_range; tests widen it to sharpen attention
  int64_t experts = 0;
  int64_t top_k = 0;
  int64_t expert_intermediate = 0;
  uint64_t seed = 0;
};

class Synthesizer {
 public:
  Synthesizer(const SynthArgs& a, int64_t hidden, c10::ScalarType dtype)
      : a_(a), hidden_(hidden), dtype_(dtype), gen_(at::detail::createCPUGenerator(a.seed)) {
    std::set<int64_t> picked;
    while (static_cast<int>(picked.size()) < a.outlier_channels)
      picked.insert(at::randint(hidden, {1}, gen_, at::kLong).item<int64_t>());
    outliers_.assign(picked.begin(), picked.end());
  }

  const std::vector<int64_t>& outliers() const { return outliers_; }

  at::Tensor linear(int64_t out, int64_t in) {
    return (at::randn({out, in}, gen_, at::kFloat) * a_.weight_std).to(dtype_);
  }

  /// Gains of a norm of `size` channels in its stored form: the effective gain g is drawn around
  /// 1 (times outlier_scale on the outlier channels when `outliers`), stored as g, or as g − 1
  /// for (1 + w) norms.
  at::Tensor norm_gain(int64_t size, core::NormForm form, bool outliers) {
    at::Tensor g = at::randn({size}, gen_, at::kFloat) * kNormGainStd + 1.0;
    if (outliers)
      for (int64_t c : outliers_)
        g[c] = g[c] * a_.outlier_scale;
    if (form == core::NormForm::RmsOnePlus) g = g - 1.0;
    return g.to(dtype_);
  }

  /// Layer i's tensors by the family's schema, in execution order: each norm before the first
  /// linear reading it (with the outlier channels), then the norms no linear reads (Gemma's
  /// post-norms, q/k norms: plain gains). The draw order is fixed, so a seed gives one model.
  core::NamedTensors layer(const core::LayerSchema& schema) {
    core::NamedTensors t;
    std::set<std::string> written;
    for (const core::LinearSpec& l : schema.linears) {
      if (!l.input_norm.empty() && written.insert(l.input_norm).second) {
        const core::NormSpec& n = schema.norm(l.input_norm);
        CALQ_ASSERT(n.size == hidden_ && !n.bias(), "synth: {} is not a hidden-wide RMSNorm",
                    n.name);
        t.emplace_back(n.checkpoint + ".weight", norm_gain(n.size, n.form, true));
      }
      CALQ_ASSERT(!l.bias && !l.checkpoint.empty(),
                  "synth: {} has a bias or is stored fused; synth writes one bias-free tensor per "
                  "linear", l.name);
      t.emplace_back(l.checkpoint + ".weight", linear(l.out, l.in));
    }
    for (const core::NormSpec& n : schema.norms) {
      if (!written.insert(n.name).second) continue;
      CALQ_ASSERT(!n.bias(), "synth: {} has a bias; synth writes RMSNorms", n.name);
      t.emplace_back(n.checkpoint + ".weight", norm_gain(n.size, n.form, false));
    }
    return t;
  }

  /// Embedding, final norm (in the layers' norm form) and, unless tied, the head.
  core::NamedTensors outer(int64_t vocab, core::NormForm norm_form, bool tied) {
    core::NamedTensors t;
    t.emplace_back("model.embed_tokens.weight", linear(vocab, hidden_));
    t.emplace_back("model.norm.weight", norm_gain(hidden_, norm_form, false));
    if (!tied) t.emplace_back("lm_head.weight", linear(vocab, hidden_));
    return t;
  }

 private:
  const SynthArgs& a_;
  int64_t hidden_;
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

// The fields every family's config class reads under the same names; the family's row adds
// its own (model_type, activation, rope, norms, windows).
Json config_json(const SynthFamily& family, const SynthShape& s) {
  Json c = {{"hidden_size", s.hidden},
            {"intermediate_size", s.intermediate},
            {"num_hidden_layers", s.layers},
            {"num_attention_heads", s.heads},
            {"num_key_value_heads", s.kv_heads},
            {"head_dim", s.head_dim},
            {"vocab_size", s.vocab},
            {"tie_word_embeddings", s.tied},
            {"torch_dtype", s.dtype}};
  family.config(s, c);
  return c;
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

const SynthFamily& resolve_family(const SynthArgs& a, const SynthPreset* preset) {
  const std::string name = !a.family.empty() ? a.family : preset ? preset->family : "llama";
  const SynthFamily* family = find_synth_family(name);
  CALQ_CHECK(family != nullptr, "--family: \"{}\" is not supported; expected one of {}", name,
             synth_family_list());
  CALQ_CHECK(!preset || name == preset->family,
             "--family {} contradicts --preset {} (a {} model); expected one of them or both alike",
             name, preset ? preset->name : "", preset ? preset->family : "");
  return *family;
}

// Flags win over the preset, the preset over the family's defaults.
SynthShape resolve_shape(const SynthArgs& a, const SynthPreset* p, const SynthFamily& family) {
  const auto pick = [](const char* flag, int64_t given, int64_t preset_value) {
    const int64_t v = given != 0 ? given : preset_value;
    CALQ_CHECK(v != 0, "{}: missing; expected a value or a --preset", flag);
    return v;
  };
  SynthShape s;
  s.hidden = pick("--hidden", a.hidden, p ? p->hidden : 0);
  s.intermediate = pick("--intermediate", a.intermediate, p ? p->intermediate : 0);
  s.layers = pick("--layers", a.layers, p ? p->layers : 0);
  s.heads = pick("--heads", a.heads, p ? p->heads : 0);
  s.kv_heads = a.kv_heads != 0 ? a.kv_heads : p ? p->kv_heads : s.heads;
  s.head_dim = a.head_dim != 0 ? a.head_dim : p ? p->head_dim : 0;
  s.vocab = a.vocab != 0 ? a.vocab : p && p->vocab != 0 ? p->vocab : family.vocab;
  s.tied = a.tied || (!a.untied && family.tied);
  s.dtype = a.dtype;
  if (family.moe) {
    s.experts = pick("--experts", a.experts, p ? p->experts : 0);
    s.top_k = pick("--top-k", a.top_k, p ? p->top_k : 0);
    s.expert_intermediate = a.expert_intermediate != 0 ? a.expert_intermediate
                            : p && p->expert_intermediate != 0 ? p->expert_intermediate
                                                                : s.intermediate;
    CALQ_CHECK(s.experts > 0 && s.top_k > 0 && s.top_k <= s.experts,
               "--top-k {} with --experts {}; expected 1 <= top-k <= experts", s.top_k, s.experts);
    CALQ_CHECK(s.expert_intermediate > 0, "--expert-intermediate: {}; expected a positive number",
               s.expert_intermediate);
  } else {
    CALQ_CHECK(a.experts == 0 && a.top_k == 0 && a.expert_intermediate == 0,
               "--experts/--top-k/--expert-intermediate: the {} family has no experts; expected "
               "--family mixtral or qwen3_moe", family.name);
  }
  for (const auto& [flag, v] : {std::pair{"--hidden", s.hidden}, {"--intermediate", s.intermediate},
                                {"--layers", s.layers}, {"--heads", s.heads},
                                {"--kv-heads", s.kv_heads}, {"--vocab", s.vocab}})
    CALQ_CHECK(v > 0, "{}: {}; expected a positive number", flag, v);
  if (s.head_dim == 0) {
    CALQ_CHECK(s.hidden % s.heads == 0, "--hidden {} is not a multiple of --heads {}", s.hidden,
               s.heads);
    s.head_dim = s.hidden / s.heads;
  }
  CALQ_CHECK(s.head_dim > 0, "--head-dim: {}; expected a positive number", s.head_dim);
  CALQ_CHECK(s.heads % s.kv_heads == 0, "--heads {} is not a multiple of --kv-heads {}", s.heads,
             s.kv_heads);
  CALQ_CHECK(s.vocab >= kByteTokens, "--vocab: {}; expected at least {} (the byte tokenizer's)",
             s.vocab, kByteTokens);
  CALQ_CHECK(a.outlier_channels >= 0 && a.outlier_channels <= s.hidden,
             "--outlier-channels: {}; expected 0 to --hidden {}", a.outlier_channels, s.hidden);
  CALQ_CHECK(a.outlier_scale >= 1.0, "--outlier-scale: {}; expected at least 1", a.outlier_scale);
  CALQ_CHECK(a.weight_std > 0 && a.weight_std <= 10, "--weight-std: {}; expected in (0, 10]",
             a.weight_std);
  return s;
}

int run_synth(const SynthArgs& a) {
  const SynthPreset* preset = nullptr;
  if (!a.preset.empty()) {
    preset = find_synth_preset(a.preset);
    CALQ_CHECK(preset != nullptr, "--preset: \"{}\" is not a preset; expected one of {}", a.preset,
               synth_preset_list());
  }
  const SynthFamily& family = resolve_family(a, preset);
  const SynthShape shape = resolve_shape(a, preset, family);
  const c10::ScalarType dtype = storage_dtype(a.dtype);
  const fs::path out = core::new_output_dir(a.out, "--out");
  // Everything goes to a temporary sibling first; the final name appears only when complete.
  const fs::path tmp = core::temp_sibling(out);
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  core::TempDirGuard guard{tmp};

  Synthesizer synth(a, shape.hidden, dtype);
  core::ShardedWriter writer(tmp.string(), shape.layers + 1);
  // The config it writes is the one the schema is read from: one description of the model.
  const std::string config_text = config_json(family, shape).dump(2) + "\n";
  const core::ModelConfig config =
      core::parse_hf_config(config_text, (out / "config.json").string());
  core::NormForm norm_form = core::NormForm::Rms;
  for (int64_t i = 0; i < shape.layers; ++i) {
    const core::LayerSchema schema = family.schema(config, i);
    norm_form = schema.norms.front().form;  // the final norm is of the layers' form
    writer.write(i, synth.layer(schema));
    log::info("synth: layer {}/{} written", i + 1, shape.layers);
  }
  writer.write(shape.layers, synth.outer(shape.vocab, norm_form, shape.tied));
  const int64_t bytes = writer.finish();
  core::write_string_atomically((tmp / "config.json").string(), config_text);
  core::write_string_atomically((tmp / "tokenizer.json").string(), tokenizer_json().dump() + "\n");
  Json info = {{"generator", "calq synth"},
               {"seed", a.seed},
               {"weight_std", a.weight_std},
               {"norm_gain_std", kNormGainStd},
               {"outlier_channels", synth.outliers()},
               {"outlier_scale", a.outlier_scale}};
  // Only beyond the default family, so a llama model's files stay what they were before.
  if (std::string_view(family.name) != "llama") info["family"] = family.name;
  if (preset) info["preset"] = preset->name;
  core::write_string_atomically((tmp / "calq_synth.json").string(), info.dump(2) + "\n");
  core::write_output_marker(tmp, "synth");
  fs::rename(tmp, out);
  guard.committed = true;
  log::info("wrote {}: {} layers, {:.2f} GB of {} tensors; outlier channels {}", a.out,
            shape.layers, static_cast<double>(bytes) / 1e9, a.dtype,
            fmt::join(synth.outliers(), ","));
  return 0;
}

}  // namespace

CommandRunner add_synth_command(CLI::App& app) {
  auto args = std::make_shared<SynthArgs>();
  CLI::App* cmd = app.add_subcommand(
      "synth", "Write a random HF checkpoint of a given family and shape (scale tests)");
  cmd->add_option("--family", args->family,
                  "Model family: " + synth_family_list() + " (default llama)");
  cmd->add_option("--preset", args->preset,
                  "A released model's shape: " + synth_preset_list() + " (flags override it)");
  cmd->add_option("--hidden", args->hidden, "hidden_size");
  cmd->add_option("--intermediate", args->intermediate, "intermediate_size");
  cmd->add_option("--layers", args->layers, "num_hidden_layers");
  cmd->add_option("--heads", args->heads, "num_attention_heads");
  cmd->add_option("--kv-heads", args->kv_heads, "num_key_value_heads (default: --heads)");
  cmd->add_option("--head-dim", args->head_dim, "head_dim (default: hidden / heads)");
  cmd->add_option("--vocab", args->vocab, "vocab_size (default: the family's)");
  cmd->add_option("--experts", args->experts, "MoE families: routed experts per layer");
  cmd->add_option("--top-k", args->top_k, "MoE families: experts per token");
  cmd->add_option("--expert-intermediate", args->expert_intermediate,
                  "MoE families: each expert's intermediate size (default: --intermediate)");
  CLI::Option* tied = cmd->add_flag("--tied", args->tied, "Tie the head to the embedding");
  cmd->add_flag("--untied", args->untied, "Write lm_head.weight (default: the family's choice)")
      ->excludes(tied);
  cmd->add_option("--dtype", args->dtype, "Stored dtype: float16, bfloat16, float32")
      ->capture_default_str();
  cmd->add_option("--outlier-channels", args->outlier_channels,
                  "Input channels with large norm gains, shared by all layers")
      ->capture_default_str();
  cmd->add_option("--outlier-scale", args->outlier_scale, "Their gain factor")
      ->capture_default_str();
  cmd->add_option("--weight-std", args->weight_std, "Standard deviation of the linears' weights")
      ->capture_default_str();
  cmd->add_option("--seed", args->seed, "Random seed")->capture_default_str();
  cmd->add_option("--out", args->out, "New model directory")->required();
  return [args] { return run_synth(*args); };
}

}  // namespace calq::cli
