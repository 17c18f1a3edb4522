// The recipe: recipe.yaml (+ --set overrides) validated into plain structs with every default
// filled (key names and defaults: docs/recipe.md, docs/architecture.md §6). All user-facing
// checks happen in load_recipe; errors name the file and the key path. Pass options stay as
// core::Options views: each pass (algorithms/) parses and finish()es its own.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/eval/eval_text.h"
#include "core/options.h"
#include "core/quant/act_granularity.h"
#include "core/quant/activation_quant.h"

namespace calq::core {

/// A path from the recipe. Relative paths written in the file are resolved against the recipe
/// file's directory; relative paths given with --set against the current directory (where the
/// shell user typed them). `resolved` is absolute and lexically normal.
struct RecipePath {
  std::string resolved;    ///< what to open
  std::string as_written;  ///< the string in the recipe or the --set value
};

enum class Device { Cpu, Cuda };
enum class ComputeDtype { Float32, Float16, BFloat16 };
enum class WeightFormat { Int, Fp8E4M3, Fp8E5M2, Fp4E2M1, Nf4 };
enum class WeightScale { Exact, Pow2 };  ///< pow2: ZeroQuant-FP's power-of-two scales (§7.4)
enum class ActFormat { Int, Fp8E4M3, Fp8E5M2 };
enum class QuantGrid { Gptq, Ct, Awq, Absmax };  ///< grid conventions, docs/algorithms.md §1.1
enum class ScaleDtype { Float16, Float32, BFloat16 };
enum class SaveFormat { Fake, Gptq, Awq, CompressedTensors };

struct ModelSection {
  RecipePath path;                      ///< HF model directory or llama2.c .bin
  std::optional<RecipePath> tokenizer;  ///< only where the model has none of its own
  Device device = Device::Cpu;
  ComputeDtype dtype = ComputeDtype::Float32;
};

/// Which tokens a mixture-of-experts layer's experts are calibrated on (docs/moe.md).
enum class MoeCalibration {
  Routed,      ///< each expert sees the tokens the router sends it
  AllExperts,  ///< statistics from every token through every expert; outputs still routed
};

/// What an expert that received fewer than min_expert_tokens calibration tokens gets.
enum class ExpertPolicy {
  Error,  ///< the run stops, naming layer, expert and count
  Damp,   ///< H + expert_damp·mean(diag H)·I (no token at all: H = I, GPTQ then equals RTN)
  Rtn,    ///< quantized by round-to-nearest instead of the recipe's data-driven quantizer
};

/// calibration.offload: where the calibration engine keeps a layer's inputs (calib/activation_store.h).
enum class ActivationOffload {
  Auto,  ///< in memory while they fit the budget, else a scratch file
  Ram,   ///< in memory; over calibration.max_memory_gb the run is refused before it starts
  Disk,  ///< always a scratch file
};

struct CalibrationSection {
  RecipePath data;  ///< calibration text
  int64_t n_samples = 128;
  int64_t seqlen = 2048;
  int64_t seed = 0;                   ///< >= 0; the only seed calibration draws from
  std::optional<RecipePath> offsets;  ///< one token offset per line; replays exact windows
  double max_memory_gb = 32.0;  ///< budget for the calibration activations in memory
  ActivationOffload offload = ActivationOffload::Auto;
  std::string offload_dir;  ///< the scratch file's folder ("" = TMPDIR or /tmp); not hashed
  MoeCalibration moe = MoeCalibration::Routed;
  int64_t min_expert_tokens = 1;  ///< below it an expert gets expert_policy
  ExpertPolicy expert_policy = ExpertPolicy::Damp;
  double expert_damp = 0.1;  ///< the Damp policy's added fraction of mean(diag H)
  /// The MoE keys as written, for the recipe's canonical JSON (absent: defaults, not echoed).
  bool moe_keys_set = false;
};

const char* moe_calibration_name(MoeCalibration mode);
const char* activation_offload_name(ActivationOffload mode);
const char* expert_policy_name(ExpertPolicy policy);

struct WeightScheme {
  int bits = 4;              ///< 2, 3, 4, 8 for int; implied by the fp/nf formats (8 or 4)
  int64_t group_size = 128;  ///< > 0, or -1 = per output channel
  bool sym = false;
  WeightFormat format = WeightFormat::Int;
  QuantGrid grid = QuantGrid::Gptq;
  ScaleDtype scale_dtype = ScaleDtype::Float16;
  WeightScale scale = WeightScale::Exact;  ///< pow2 only with the fp/nf formats
};

struct ActivationScheme {
  int bits = 8;  ///< 4 or 8
  ActGranularity granularity = ActGranularity::PerToken;
  bool dynamic = true;
  bool sym = true;
  /// Also quantize the outputs of attn.q/k/v per token: the inputs of the attention matmuls
  /// (smoothquant fake_quant.py quantize_bmm_input, True in its ppl_eval.py).
  bool bmm_inputs = false;
  ActFormat format = ActFormat::Int;  ///< fp8_*: round x/s to the FP8 grid, s = amax / fmax
  /// The runtime quantizer of these activations (the scale source, dynamic or static, aside).
  ActQuantSpec spec() const {
    ActQuantSpec s{bits, sym, granularity, std::nullopt};
    if (format == ActFormat::Fp8E4M3) s.fp = FpFormat::E4M3;
    if (format == ActFormat::Fp8E5M2) s.fp = FpFormat::E5M2;
    return s;
  }
};

/// Per-linear weight overrides (mixed precision): fields left empty keep the scheme's value.
struct WeightOverride {
  std::string pattern;  ///< glob over uniform linear names, e.g. "mlp.down" or "attn.*"
  std::optional<int> bits;
  std::optional<int64_t> group_size;
  std::optional<bool> sym;
};

/// One bit width a mixed-precision allocation may give a linear.
struct MixedCandidate {
  int bits = 4;
  int64_t group_size = 128;
};

/// scheme.mixed_precision: before quantizing, pick per layer and linear one of `candidates` so
/// that the summed sensitivity (Hessian proxy, docs/algorithms.md §8) is least while the average
/// stored bits per weight (codes + float16 scales + zeros) stay within `budget_bits`.
struct MixedPrecisionSection {
  double budget_bits = 3.5;
  std::vector<MixedCandidate> candidates;  ///< at least two, sorted by stored bits
};

struct SchemeSection {
  WeightScheme weights;
  std::optional<ActivationScheme> activations;  ///< nullopt = activations stay float
  std::vector<std::string> targets = {"attn.*", "mlp.*"};
  std::vector<WeightOverride> overrides;  ///< in file order
  /// Overrides whose pattern starts with "layers.<i>." (or "layers.*.") match the linear's
  /// qualified name, e.g. "layers.3.mlp.down"; the others match the uniform name.
  std::optional<MixedPrecisionSection> mixed_precision;
};

struct PassEntry {
  std::string name;  ///< the YAML key: "gptq", "rtn", ...
  Options options;   ///< key path "passes.<i>.<name>"; the pass reads and finish()es it
};

struct PerplexityEval {
  RecipePath data;
  int64_t seqlen = 2048;
  TextJoin join = TextJoin::AsIs;
  int64_t max_windows = 0;  ///< 0 = every window
};

/// eval.kl (docs/tasks.md "KL divergence"): the quantized model against a base on the first
/// perplexity entry's windows.
struct KlEval {
  std::optional<RecipePath> base_file;  ///< a `calq eval --save-logits` file; absent: the float model
  int64_t top_k = 256;                  ///< kept per position when the float model is the base
};

/// One entry of eval.tasks: a task definition (docs/tasks.md) and optionally its documents.
struct TaskEval {
  RecipePath task;
  std::optional<RecipePath> data;
  int64_t limit = 0;  ///< 0 = every document
};

struct EvalSection {
  std::vector<PerplexityEval> perplexity;
  std::optional<KlEval> kl;
  std::vector<TaskEval> tasks;
};

struct SaveSection {
  SaveFormat format = SaveFormat::Fake;
  RecipePath path;
  /// fake only: the dtype of the dequantized weights; absent = the model's own storage dtype.
  std::optional<ComputeDtype> dtype;
};

struct Recipe {
  std::string file;                    ///< the recipe path as given
  std::vector<std::string> overrides;  ///< the --set strings, in order
  ModelSection model;
  std::optional<CalibrationSection> calibration;  ///< absent section = none
  SchemeSection scheme;
  std::vector<PassEntry> passes;  ///< empty = plain RTN to the scheme
  EvalSection eval;
  std::optional<SaveSection> save;  ///< absent = no export

  /// The recipe as JSON text (report.json "recipe"): every section with its defaults, paths
  /// resolved, absent optional sections as null, pass options as given. A pure function of this
  /// value: reading options never changes it. Pass defaults are in it once the recipe went
  /// through algorithms::resolve_recipe (algorithms/resolved_recipe.h), as `calq run` does.
  std::string resolved_json(int indent = -1) const;
  /// FNV-1a 64 over resolved_json() with sorted keys and no whitespace (a cache key).
  uint64_t hash() const;
  std::string hash_hex() const;  ///< 16 lowercase hex digits
  /// FNV-1a 64 over the scheme and passes only: what changes the model's weights (the
  /// calibration cache's fingerprint of upstream processing).
  uint64_t processing_hash() const;
};

/// Reads `path` (YAML), applies each "key.path=value" override (the value parsed as YAML:
/// `bits=3`, `offsets=null`, `targets=[attn.*]`; numeric parts index lists; missing keys are
/// created), validates, and fills defaults. Throws calq::Error "<path>: <key.path>: ...".
Recipe load_recipe(const std::string& path, const std::vector<std::string>& overrides = {});

/// The same from recipe text in memory; `path` names it in errors and anchors its relative paths
/// (nothing is opened). load_recipe reads the file and calls this; so does the fuzz target.
Recipe parse_recipe(const std::string& yaml, const std::string& path,
                    const std::vector<std::string>& overrides = {});

/// Another YAML file of calq's (a task definition, docs/tasks.md) read with a recipe's checks —
/// bounded size, depth and aliases, UTF-8, no duplicate keys — as typed options whose errors
/// name `path` and the key. `expected` says what the file should be ("a task definition").
Options load_yaml_options(const std::string& path, const std::string& expected);

// Names as written in YAML, for logs and report.json.
const char* device_name(Device device);
const char* compute_dtype_name(ComputeDtype dtype);
const char* weight_format_name(WeightFormat format);
const char* weight_scale_name(WeightScale scale);
const char* act_format_name(ActFormat format);
const char* quant_grid_name(QuantGrid grid);
const char* scale_dtype_name(ScaleDtype dtype);
const char* act_granularity_name(ActGranularity granularity);
const char* save_format_name(SaveFormat format);

}  // namespace calq::core
