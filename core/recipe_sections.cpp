#include "core/recipe_sections.h"

#include <filesystem>
#include <utility>
#include <fmt/ranges.h>

#include "core/hash.h"
#include "core/options_tree.h"

namespace calq::core {

namespace {

namespace fs = std::filesystem;

// One table per enum: the YAML names, in the order error messages list them.
template <typename E>
using NameTable = std::vector<std::pair<const char*, E>>;

const NameTable<MoeCalibration> kMoeCalibrations = {{"routed", MoeCalibration::Routed},
                                                    {"all_experts", MoeCalibration::AllExperts}};
const NameTable<ActivationOffload> kOffloads = {{"auto", ActivationOffload::Auto},
                                                {"ram", ActivationOffload::Ram},
                                                {"disk", ActivationOffload::Disk}};
const NameTable<ExpertPolicy> kExpertPolicies = {
    {"error", ExpertPolicy::Error}, {"damp", ExpertPolicy::Damp}, {"rtn", ExpertPolicy::Rtn}};
const NameTable<Device> kDevices = {{"cpu", Device::Cpu}, {"cuda", Device::Cuda}};
const NameTable<ComputeDtype> kComputeDtypes = {{"float32", ComputeDtype::Float32},
                                                {"float16", ComputeDtype::Float16},
                                                {"bfloat16", ComputeDtype::BFloat16}};
const NameTable<WeightFormat> kWeightFormats = {{"int", WeightFormat::Int},
                                                {"fp8_e4m3", WeightFormat::Fp8E4M3},
                                                {"fp8_e5m2", WeightFormat::Fp8E5M2},
                                                {"fp4_e2m1", WeightFormat::Fp4E2M1},
                                                {"nf4", WeightFormat::Nf4}};
const NameTable<WeightScale> kWeightScales = {{"exact", WeightScale::Exact},
                                              {"pow2", WeightScale::Pow2}};
const NameTable<ActFormat> kActFormats = {{"int", ActFormat::Int},
                                          {"fp8_e4m3", ActFormat::Fp8E4M3},
                                          {"fp8_e5m2", ActFormat::Fp8E5M2}};
const NameTable<QuantGrid> kGrids = {{"gptq", QuantGrid::Gptq},
                                     {"ct", QuantGrid::Ct},
                                     {"awq", QuantGrid::Awq},
                                     {"absmax", QuantGrid::Absmax}};
const NameTable<ScaleDtype> kScaleDtypes = {{"float16", ScaleDtype::Float16},
                                            {"float32", ScaleDtype::Float32},
                                            {"bfloat16", ScaleDtype::BFloat16}};
const NameTable<ActGranularity> kGranularities = {{"token", ActGranularity::PerToken},
                                                  {"tensor", ActGranularity::PerTensor}};
const NameTable<SaveFormat> kSaveFormats = {{"fake", SaveFormat::Fake},
                                            {"gptq", SaveFormat::Gptq},
                                            {"awq", SaveFormat::Awq},
                                            {"compressed-tensors", SaveFormat::CompressedTensors}};
const NameTable<TextJoin> kJoins = {{"as-is", TextJoin::AsIs},
                                    {"wikitext-rows", TextJoin::WikitextRows}};

const std::vector<int64_t> kWeightBits = {2, 3, 4, 8};

template <typename E>
const char* name_in(const NameTable<E>& table, E value) {
  for (const auto& [name, v] : table) {
    if (v == value)
      return name;
  }
  return "?";
}

template <typename E>
E get_enum(const Options& o, const std::string& key, E fallback, const NameTable<E>& table) {
  std::vector<std::string> names;
  for (const auto& entry : table)
    names.push_back(entry.first);
  const std::string name = o.get_string_in(key, name_in(table, fallback), names);
  for (const auto& [n, v] : table) {
    if (name == n)
      return v;
  }
  return fallback;
}

// Checks the keys of a section before reading it, so a typo'd required key reports "unknown
// key; did you mean" rather than "missing".
void expect_keys(const Options& o, const std::vector<std::string>& keys) {
  o.declare(keys);
  o.finish();
}

std::optional<RecipePath> find_path(const Options& o, const std::string& key) {
  const auto written = o.find_string(key);
  if (!written)
    return std::nullopt;
  if (written->empty())
    o.fail(key, "empty path; expected a file or directory");
  // In-file paths are relative to the recipe (recipes travel with their data); --set paths
  // relative to the current directory, where the shell user typed them.
  const fs::path base = detail::OptionsAccess::from_override(o, key)
                            ? fs::current_path()
                            : fs::absolute(fs::path(o.file())).parent_path();
  const fs::path p(*written);
  return RecipePath{(p.is_absolute() ? p : base / p).lexically_normal().string(), *written};
}

RecipePath require_path(const Options& o, const std::string& key) {
  if (auto p = find_path(o, key))
    return *p;
  o.fail(key, "missing; expected a path");
}

void check_group_size(const Options& o, const std::string& key, int64_t group_size) {
  if (group_size == 0 || group_size < -1) {
    o.fail(key, "{} is not a valid group size; expected a positive integer or -1 (per channel)",
           group_size);
  }
}

ModelSection read_model(const Options& root) {
  const auto m = root.find_child("model");
  if (!m)
    root.fail("model", "missing; expected a mapping with at least path");
  expect_keys(*m, {"path", "tokenizer", "device", "dtype"});
  ModelSection out;
  out.path = require_path(*m, "path");
  out.tokenizer = find_path(*m, "tokenizer");
  out.device = get_enum(*m, "device", out.device, kDevices);
  out.dtype = get_enum(*m, "dtype", out.dtype, kComputeDtypes);
  return out;
}

std::optional<CalibrationSection> read_calibration(const Options& root) {
  const auto c = root.find_child("calibration");
  if (!c)
    return std::nullopt;
  expect_keys(*c, {"data", "nsamples", "seqlen", "seed", "offsets", "max_memory_gb", "offload",
                   "offload_dir", "moe", "min_expert_tokens", "expert_policy", "expert_damp"});
  CalibrationSection out;
  out.data = require_path(*c, "data");
  out.n_samples = c->get_int_at_least("nsamples", out.n_samples, 1);
  out.seqlen = c->get_int_at_least("seqlen", out.seqlen, 2);  // one predicted token at least
  out.seed = c->get_int_at_least("seed", out.seed, 0);
  out.offsets = find_path(*c, "offsets");
  out.max_memory_gb = c->get_double_in_range("max_memory_gb", out.max_memory_gb, 1e-3, 1e6);
  out.offload = get_enum(*c, "offload", out.offload, kOffloads);
  out.offload_dir = c->get_string("offload_dir", "");
  for (const char* key : {"moe", "min_expert_tokens", "expert_policy", "expert_damp"})
    out.moe_keys_set = out.moe_keys_set || c->has(key);
  out.moe = get_enum(*c, "moe", out.moe, kMoeCalibrations);
  out.min_expert_tokens = c->get_int_at_least("min_expert_tokens", out.min_expert_tokens, 0);
  out.expert_policy = get_enum(*c, "expert_policy", out.expert_policy, kExpertPolicies);
  out.expert_damp = c->get_double_in_range("expert_damp", out.expert_damp, 0.0, 1e6);
  return out;
}


int weight_format_bits(WeightFormat format) {
  switch (format) {
    case WeightFormat::Fp8E4M3:
    case WeightFormat::Fp8E5M2:
      return 8;
    case WeightFormat::Fp4E2M1:
    case WeightFormat::Nf4:
      return 4;
    case WeightFormat::Int:
      break;
  }
  return 0;
}

WeightScheme read_weights(const Options& w) {
  expect_keys(w, {"bits", "group_size", "sym", "format", "grid", "scale_dtype", "scale"});
  WeightScheme out;
  out.format = get_enum(w, "format", out.format, kWeightFormats);
  if (const int width = weight_format_bits(out.format); width != 0) {
    // A float/NF format fixes its width; bits may repeat it but not contradict it.
    const int64_t bits = w.get_int("bits", width);
    if (bits != width) {
      w.fail("bits", "{} does not match format {}; expected {}", bits,
             weight_format_name(out.format), width);
    }
    out.bits = width;
  } else {
    out.bits = static_cast<int>(w.get_int_in("bits", out.bits, kWeightBits));
  }
  out.group_size = w.get_int("group_size", out.group_size);
  check_group_size(w, "group_size", out.group_size);
  out.sym = w.get_bool("sym", out.sym);
  out.grid = get_enum(w, "grid", out.grid, kGrids);
  out.scale_dtype = get_enum(w, "scale_dtype", out.scale_dtype, kScaleDtypes);
  out.scale = get_enum(w, "scale", out.scale, kWeightScales);
  if (out.scale == WeightScale::Pow2 && out.format == WeightFormat::Int) {
    w.fail("scale", "pow2 applies to the floating-point formats (ZeroQuant-FP); expected exact "
                    "with format int");
  }
  return out;
}

std::optional<ActivationScheme> read_activations(const Options& scheme) {
  const auto a = scheme.find_child("activations");
  if (!a)
    return std::nullopt;
  expect_keys(*a, {"bits", "granularity", "dynamic", "sym", "bmm_inputs", "format"});
  ActivationScheme out;
  out.format = get_enum(*a, "format", out.format, kActFormats);
  out.bits = static_cast<int>(a->get_int_in("bits", out.bits, {4, 8}));
  if (out.format != ActFormat::Int && out.bits != 8)
    a->fail("bits", "{} does not match format {}; expected 8", out.bits, act_format_name(out.format));
  out.granularity = get_enum(*a, "granularity", out.granularity, kGranularities);
  out.dynamic = a->get_bool("dynamic", out.dynamic);
  out.sym = a->get_bool("sym", out.sym);
  out.bmm_inputs = a->get_bool("bmm_inputs", out.bmm_inputs);
  if (out.format != ActFormat::Int && !out.sym)
    a->fail("sym", "false: {} activations are sign-magnitude, with no zero point; expected true",
            act_format_name(out.format));
  if (out.bmm_inputs && !out.dynamic)
    a->fail("bmm_inputs", "true needs dynamic: true (q/k/v outputs are quantized per token)");
  if (!out.dynamic && out.granularity == ActGranularity::PerToken) {
    a->fail("dynamic", "false needs granularity: tensor (a static scale is fixed at calibration "
                       "for the whole tensor; per-token scales are always dynamic)");
  }
  return out;
}

std::vector<WeightOverride> read_weight_overrides(const Options& scheme) {
  std::vector<WeightOverride> out;
  const auto ov = scheme.find_child("overrides");
  if (!ov)
    return out;
  for (const auto& pattern : ov->keys()) {
    if (pattern.empty())
      ov->fail(pattern, "empty pattern; expected a glob over linear names");
    const Options e = ov->child(pattern);
    expect_keys(e, {"bits", "group_size", "sym"});
    WeightOverride entry{pattern, std::nullopt, std::nullopt, std::nullopt};
    if (e.has("bits"))
      entry.bits = static_cast<int>(e.get_int_in("bits", 0, kWeightBits));
    if ((entry.group_size = e.find_int("group_size"))) {
      check_group_size(e, "group_size", *entry.group_size);
    }
    entry.sym = e.find_bool("sym");
    out.push_back(entry);
  }
  return out;
}

std::optional<MixedPrecisionSection> read_mixed_precision(const Options& scheme,
                                                          const WeightScheme& weights) {
  const auto m = scheme.find_child("mixed_precision");
  if (!m)
    return std::nullopt;
  expect_keys(*m, {"budget_bits", "candidates"});
  if (weights.format != WeightFormat::Int)
    m->fail("candidates", "mixed precision allocates integer bit widths; expected weights.format int");
  MixedPrecisionSection out;
  out.budget_bits = m->get_double_in_range("budget_bits", out.budget_bits, 1.0, 16.0);
  for (const Options& c : m->get_list_of_maps("candidates")) {
    expect_keys(c, {"bits", "group_size"});
    MixedCandidate candidate;
    candidate.bits = static_cast<int>(c.get_int_in("bits", candidate.bits, kWeightBits));
    candidate.group_size = c.get_int("group_size", weights.group_size);
    check_group_size(c, "group_size", candidate.group_size);
    out.candidates.push_back(candidate);
  }
  if (out.candidates.size() < 2)
    m->fail("candidates", "{} given; expected at least two {{bits, group_size}} to choose from",
            out.candidates.size());
  return out;
}

SchemeSection read_scheme(const Options& root) {
  const Options s = root.child("scheme");
  expect_keys(s, {"weights", "activations", "targets", "overrides", "mixed_precision"});
  SchemeSection out;
  out.weights = read_weights(s.child("weights"));
  out.activations = read_activations(s);
  out.targets = s.get_strings("targets", out.targets);
  if (out.targets.empty())
    s.fail("targets", "empty list; expected at least one glob pattern");
  for (size_t i = 0; i < out.targets.size(); ++i) {
    if (out.targets[i].empty()) {
      s.fail("targets." + std::to_string(i), "empty pattern; expected a glob over linear names");
    }
  }
  out.overrides = read_weight_overrides(s);
  out.mixed_precision = read_mixed_precision(s, out.weights);
  for (const WeightOverride& o : out.overrides) {
    if (weight_format_bits(out.weights.format) != 0 && o.bits && *o.bits != out.weights.bits) {
      s.fail("overrides." + o.pattern + ".bits",
             "{} under scheme.weights.format {}, which fixes {} bits; expected no bits override",
             *o.bits, weight_format_name(out.weights.format), out.weights.bits);
    }
  }
  return out;
}

EvalSection read_eval(const Options& root) {
  const Options e = root.child("eval");
  expect_keys(e, {"perplexity", "kl", "tasks"});
  EvalSection out;
  for (const Options& p : e.get_list_of_maps("perplexity")) {
    expect_keys(p, {"data", "seqlen", "join", "max_windows"});
    PerplexityEval item;
    item.data = require_path(p, "data");
    item.seqlen = p.get_int_at_least("seqlen", item.seqlen, 2);
    item.join = get_enum(p, "join", item.join, kJoins);
    item.max_windows = p.get_int_at_least("max_windows", item.max_windows, 0);
    out.perplexity.push_back(item);
  }
  if (const auto k = e.find_child("kl")) {
    expect_keys(*k, {"base", "top_k"});
    KlEval kl;
    const std::string base = k->get_string("base", "float");
    if (base != "float") kl.base_file = require_path(*k, "base");
    kl.top_k = k->get_int_in_range("top_k", kl.top_k, 1, int64_t{1} << 20);
    if (out.perplexity.empty()) {
      k->fail("", "KL is measured on the windows of eval.perplexity[0], but eval.perplexity is "
                  "empty; expected a perplexity entry");
    }
    out.kl = kl;
  }
  for (const Options& t : e.get_list_of_maps("tasks")) {
    expect_keys(t, {"task", "data", "limit"});
    TaskEval item;
    item.task = require_path(t, "task");
    item.data = find_path(t, "data");
    item.limit = t.get_int_at_least("limit", 0, 0);
    out.tasks.push_back(item);
  }
  return out;
}

std::optional<SaveSection> read_save(const Options& root) {
  const auto s = root.find_child("save");
  if (!s)
    return std::nullopt;
  expect_keys(*s, {"format", "path", "dtype"});
  std::vector<std::string> names;
  for (const auto& entry : kSaveFormats)
    names.push_back(entry.first);
  if (!s->has("format"))
    s->fail("format", "missing; expected one of {}", fmt::join(names, ", "));
  SaveSection out;
  out.format = get_enum(*s, "format", out.format, kSaveFormats);
  out.path = require_path(*s, "path");
  if (s->has("dtype")) {
    if (out.format != SaveFormat::Fake)
      s->fail("dtype", "only applies to format: fake (packed formats store their own dtypes)");
    out.dtype = get_enum(*s, "dtype", ComputeDtype::Float16, kComputeDtypes);
  }
  return out;
}

Json path_json(const std::optional<RecipePath>& p) {
  return p ? Json(p->resolved) : Json(nullptr);
}

Json resolved_tree(const Recipe& r) {
  Json out = Json::object();
  out["model"] = {{"path", r.model.path.resolved},
                  {"tokenizer", path_json(r.model.tokenizer)},
                  {"device", device_name(r.model.device)},
                  {"dtype", compute_dtype_name(r.model.dtype)}};
  out["calibration"] = nullptr;
  if (const auto& c = r.calibration) {
    out["calibration"] = {{"data", c->data.resolved},
                          {"nsamples", c->n_samples},
                          {"seqlen", c->seqlen},
                          {"seed", c->seed},
                          {"offsets", path_json(c->offsets)}};
    if (c->moe_keys_set) {  // echoed only when written: older recipes keep their JSON
      out["calibration"]["moe"] = moe_calibration_name(c->moe);
      out["calibration"]["min_expert_tokens"] = c->min_expert_tokens;
      out["calibration"]["expert_policy"] = expert_policy_name(c->expert_policy);
      out["calibration"]["expert_damp"] = c->expert_damp;
    }
  }
  const WeightScheme& w = r.scheme.weights;
  Json scheme = Json::object();
  scheme["weights"] = {{"bits", w.bits},
                       {"group_size", w.group_size},
                       {"sym", w.sym},
                       {"format", weight_format_name(w.format)},
                       {"grid", quant_grid_name(w.grid)},
                       {"scale_dtype", scale_dtype_name(w.scale_dtype)},
                       {"scale", weight_scale_name(w.scale)}};
  scheme["activations"] = nullptr;
  if (const auto& a = r.scheme.activations) {
    scheme["activations"] = {{"bits", a->bits},
                             {"granularity", act_granularity_name(a->granularity)},
                             {"dynamic", a->dynamic},
                             {"sym", a->sym},
                             {"bmm_inputs", a->bmm_inputs},
                             {"format", act_format_name(a->format)}};
  }
  scheme["targets"] = r.scheme.targets;
  scheme["overrides"] = Json::object();
  for (const auto& o : r.scheme.overrides) {
    Json entry = Json::object();
    if (o.bits)
      entry["bits"] = *o.bits;
    if (o.group_size)
      entry["group_size"] = *o.group_size;
    if (o.sym)
      entry["sym"] = *o.sym;
    scheme["overrides"][o.pattern] = entry;
  }
  // Only when set: recipes without it keep the hashes earlier reports recorded.
  if (const auto& m = r.scheme.mixed_precision) {
    Json candidates = Json::array();
    for (const MixedCandidate& c : m->candidates)
      candidates.push_back({{"bits", c.bits}, {"group_size", c.group_size}});
    scheme["mixed_precision"] = {{"budget_bits", m->budget_bits}, {"candidates", candidates}};
  }
  out["scheme"] = scheme;
  out["passes"] = Json::array();
  for (const auto& p : r.passes) {
    // As given: defaults belong to the passes, which algorithms/resolved_recipe.h asks once.
    Json options = detail::OptionsAccess::given(p.options);
    if (options.is_null())
      options = Json::object();
    out["passes"].push_back(Json::object({{p.name, options}}));
  }
  out["eval"] = {{"perplexity", Json::array()}};
  for (const auto& p : r.eval.perplexity) {
    out["eval"]["perplexity"].push_back({{"data", p.data.resolved},
                                         {"seqlen", p.seqlen},
                                         {"join", text_join_name(p.join)},
                                         {"max_windows", p.max_windows}});
  }
  // Present only when set, so recipes without them keep their resolved text (sweep hashes).
  if (r.eval.kl) {
    out["eval"]["kl"] = {{"base", r.eval.kl->base_file ? Json(r.eval.kl->base_file->resolved)
                                                       : Json("float")},
                         {"top_k", r.eval.kl->top_k}};
  }
  for (const auto& t : r.eval.tasks) {
    out["eval"]["tasks"].push_back({{"task", t.task.resolved},
                                    {"data", t.data ? Json(t.data->resolved) : Json(nullptr)},
                                    {"limit", t.limit}});
  }
  out["save"] = nullptr;
  if (r.save)
    out["save"] = {{"format", save_format_name(r.save->format)},
                   {"path", r.save->path.resolved},
                   {"dtype", r.save->dtype ? Json(compute_dtype_name(*r.save->dtype)) : Json(nullptr)}};
  return out;
}

}  // namespace

void detail::read_sections(const Options& root, Recipe& recipe) {
  expect_keys(root, {"model", "calibration", "scheme", "passes", "eval", "save"});
  recipe.model = read_model(root);
  recipe.calibration = read_calibration(root);
  recipe.scheme = read_scheme(root);
  recipe.eval = read_eval(root);
  recipe.save = read_save(root);
}

std::string Recipe::resolved_json(int indent) const {
  return resolved_tree(*this).dump(indent);
}

uint64_t Recipe::hash() const {
  // Sorted keys (nlohmann::json, not ordered_json) so the hash ignores the file's key order.
  return fnv1a64(nlohmann::json::parse(resolved_tree(*this).dump()).dump());
}

uint64_t Recipe::processing_hash() const {
  const nlohmann::json tree = nlohmann::json::parse(resolved_tree(*this).dump());
  return fnv1a64(nlohmann::json{{"scheme", tree.at("scheme")}, {"passes", tree.at("passes")}}.dump());
}

std::string Recipe::hash_hex() const {
  return fmt::format("{:016x}", hash());
}

const char* device_name(Device device) {
  return name_in(kDevices, device);
}
const char* compute_dtype_name(ComputeDtype dtype) {
  return name_in(kComputeDtypes, dtype);
}
const char* weight_format_name(WeightFormat format) {
  return name_in(kWeightFormats, format);
}
const char* weight_scale_name(WeightScale scale) {
  return name_in(kWeightScales, scale);
}
const char* act_format_name(ActFormat format) {
  return name_in(kActFormats, format);
}
const char* quant_grid_name(QuantGrid grid) {
  return name_in(kGrids, grid);
}
const char* scale_dtype_name(ScaleDtype dtype) {
  return name_in(kScaleDtypes, dtype);
}
const char* act_granularity_name(ActGranularity g) {
  return name_in(kGranularities, g);
}
const char* save_format_name(SaveFormat format) {
  return name_in(kSaveFormats, format);
}

const char* moe_calibration_name(MoeCalibration mode) { return name_in(kMoeCalibrations, mode); }
const char* expert_policy_name(ExpertPolicy policy) { return name_in(kExpertPolicies, policy); }
const char* activation_offload_name(ActivationOffload mode) { return name_in(kOffloads, mode); }

}  // namespace calq::core
