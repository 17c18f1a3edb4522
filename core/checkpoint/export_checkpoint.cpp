#include "core/checkpoint/export_checkpoint.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "core/checkpoint/certificate.h"
#include "core/checkpoint/checkpoint_weights.h"
#include "core/checkpoint/packed_linear.h"
#include "core/error.h"
#include "core/io/json_text.h"
#include "core/io/atomic_file.h"
#include "core/io/output_dir.h"
#include "core/io/safetensors.h"
#include "core/io/sharded_writer.h"
#include "core/model/weight_source.h"
#include "core/log.h"
#include "core/model/model.h"

namespace calq::core {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

// Files an HF model directory carries besides weights and config.json.
const char* const kCarriedFiles[] = {"tokenizer.json",     "tokenizer.model",     "tokenizer_config.json",
                                     "special_tokens_map.json", "vocab.json",     "merges.txt",
                                     "added_tokens.json",  "generation_config.json", "chat_template.jinja"};

const char* dtype_config_name(c10::ScalarType t) {
  return t == at::kHalf ? "float16" : t == at::kBFloat16 ? "bfloat16" : "float32";
}

/// config.json of the exported model: the original verbatim (HF) or a Llama config (llama2.c).
Json base_config(const Model& model) {
  const ModelConfig& c = model.config();
  if (c.model_type != "llama2c") {
    const fs::path path = fs::path(model.path()) / "config.json";
    const fs::path file =
        fs::is_directory(model.path()) ? path : fs::path(model.path()).parent_path() / "config.json";
    JsonReadOptions read;
    read.what = "config";
    read.expected = "an HF config.json";
    return read_json_file(file.string(), read);
  }
  return {{"architectures", {"LlamaForCausalLM"}},
          {"model_type", "llama"},
          {"vocab_size", c.vocab_size},
          {"hidden_size", c.hidden_size},
          {"intermediate_size", c.intermediate_size},
          {"num_hidden_layers", c.n_layers},
          {"num_attention_heads", c.n_heads},
          {"num_key_value_heads", c.n_kv_heads},
          {"head_dim", c.head_dim},
          {"max_position_embeddings", c.max_positions},
          {"rms_norm_eps", c.norm_eps},
          {"rope_theta", c.rope.theta},
          {"hidden_act", "silu"},
          {"attention_bias", false},
          {"mlp_bias", false},
          {"tie_word_embeddings", c.tie_word_embeddings},
          {"bos_token_id", c.bos_token_id.value_or(1)},
          {"eos_token_id", c.eos_token_id.value_or(2)},
          {"torch_dtype", "float32"}};
}

void set_dtype(Json& config, c10::ScalarType t) {
  if (config.contains("dtype")) config["dtype"] = dtype_config_name(t);
  config["torch_dtype"] = dtype_config_name(t);
}

/// x rounded to `dtype` and back, in place: what a checkpoint in that dtype holds.
void round_in_place(at::Tensor& x, c10::ScalarType dtype) {
  if (x.defined() && x.scalar_type() != dtype) x.copy_(x.to(dtype).to(x.scalar_type()));
}

struct Plan {
  std::optional<PackedLayout> layout;  // nullopt: fake
  c10::ScalarType dtype = at::kFloat;  // float tensors as stored
  // Linears a packed checkpoint keeps float (MoE routers the recipe does not quantize), by full
  // module name; the quantization_config names them so loaders leave them nn.Linear.
  std::set<std::string> float_modules;
  // The block-relative names of the packed linears ("self_attn.q_proj", ...).
  std::set<std::string> packed_in_block;
};

/// "block_sparse_moe.experts.3.w1" for "model.layers.7.block_sparse_moe.experts.3.w1".
std::string name_in_block(const std::string& source) {
  const std::string marker = ".layers.";
  const size_t at = source.find(marker);
  if (at == std::string::npos) return source;
  const size_t dot = source.find('.', at + marker.size());
  return dot == std::string::npos ? source : source.substr(dot + 1);
}

std::string tensor_where(const Linear& linear, int64_t layer, const std::string& name) {
  return linear.source.empty() ? fmt::format("layer {} {}", layer, name) : linear.source;
}

/// Checks layer i against the format and fixes plan.layout from the first quantized linear.
void plan_layer(Plan& plan, DecoderLayer& layer, const LayerSchema& schema, int64_t i,
                const std::map<std::string, QuantizedTensor>& quantized, const ExportOptions& o,
                const std::string& model_type) {
  const char* format = save_format_name(o.format);
  for (const std::string& name : layer.linear_names()) {
    const Linear& linear = layer.linear(name);
    CALQ_CHECK(!linear.source.empty(),
               "save.format {}: {} has no tensor of its own in the checkpoint (GPT-2 fuses q, k, "
               "v in c_attn); calq does not export {} models yet",
               format, tensor_where(linear, i, name), model_type);
    if (o.format == SaveFormat::Fake) continue;
    const auto it = quantized.find(name);
    const LinearSpec* spec = schema.find_linear(name);
    if (it == quantized.end() && spec != nullptr && is_router(spec->role)) {
      plan.float_modules.insert(linear.source);  // a router stays float unless quantized
      continue;
    }
    plan.packed_in_block.insert(name_in_block(linear.source));
    CALQ_CHECK(it != quantized.end(),
               "save.format {}: {} stays float (not in scheme.targets); expected every linear of "
               "the decoder layers quantized",
               format, linear.source);
    if (!plan.layout) plan.layout = layout_for(o.format, it->second, o.activations);
    const std::string why = unrepresentable_reason(*plan.layout, it->second);
    CALQ_CHECK(why.empty(), "save.format {}: {}: {}", format, linear.source, why);
  }
}

Plan plan_dtype(const Model& model, const ExportOptions& o) {
  Plan plan;
  const ModelConfig& c = model.config();
  plan.dtype = o.format == SaveFormat::Fake ? o.fake_dtype.value_or(c.storage_dtype) : c.storage_dtype;
  return plan;
}

Plan plan_export(Model& model, const QuantizedLinears& quantized, const ExportOptions& o) {
  Plan plan = plan_dtype(model, o);
  CALQ_CHECK(quantized.size() == static_cast<size_t>(model.n_layers()),
             "save: {} layers of quantized tensors for a {}-layer model", quantized.size(),
             model.n_layers());
  for (int64_t i = 0; i < model.n_layers(); ++i)
    plan_layer(plan, model.layer(i), model.layer_schema(i), i, quantized[static_cast<size_t>(i)], o,
               model.config().model_type);
  return plan;
}

/// The layer becomes exactly what the checkpoint holds: biases, norms (folded by SmoothQuant or
/// AWQ) and fake-quantized weights rounded to the stored dtype in place.
void round_layer(DecoderLayer& layer, const Plan& plan,
                 const std::map<std::string, QuantizedTensor>& quantized) {
  for (const std::string& name : layer.linear_names()) {
    Linear& l = layer.linear(name);
    round_in_place(l.bias, plan.dtype);
    if (!plan.layout || quantized.count(name) == 0) round_in_place(l.weight, plan.dtype);
  }
  for (const std::string& norm : layer.norm_names()) {
    round_in_place(layer.norm(norm).weight, plan.dtype);
    round_in_place(layer.norm(norm).bias, plan.dtype);
  }
}

/// One decoder layer's tensors as the checkpoint stores them (packed linears or float weights,
/// biases, norms); adds the layer's tensor prefixes and counts its quantized linears.
NamedTensors layer_tensors(DecoderLayer& layer, const std::map<std::string, QuantizedTensor>& quantized,
                           const Plan& plan, std::set<std::string>& prefixes, int64_t& n_quantized) {
  NamedTensors tensors;
  const auto add = [&](const std::string& name, const at::Tensor& t) {
    if (t.defined()) tensors.emplace_back(name, t.to(at::kCPU));
  };
  for (const std::string& name : layer.linear_names()) {
    const Linear& l = layer.linear(name);
    prefixes.insert(l.source);
    if (plan.layout && quantized.count(name) != 0) {
      for (auto& t : pack_linear(*plan.layout, l.source, quantized.at(name)))
        tensors.push_back(std::move(t));
      ++n_quantized;
    } else {
      add(l.source + ".weight", l.weight.to(plan.dtype));
      if (quantized.count(name)) ++n_quantized;
    }
    add(l.source + ".bias", l.bias.defined() ? l.bias.to(plan.dtype) : l.bias);
  }
  for (const std::string& norm : layer.norm_names()) {
    const Norm& n = layer.norm(norm);
    prefixes.insert(n.source);
    add(n.source + ".weight", n.weight.to(plan.dtype));
    add(n.source + ".bias", n.bias.defined() ? n.bias.to(plan.dtype) : n.bias);
  }
  return tensors;
}

/// Everything outside the decoder layers (embeddings, final norm, head, positions) as the
/// source stores it, float tensors in the stored dtype.
NamedTensors outer_tensors(const Model& model, const std::set<std::string>& layer_prefixes,
                           const Plan& plan) {
  NamedTensors tensors;
  const std::shared_ptr<WeightSource> source = open_model_weights(model.path());
  for (const std::string& name : source->names()) {
    const size_t dot = name.rfind('.');
    if (dot != std::string::npos && layer_prefixes.count(name.substr(0, dot))) continue;
    at::Tensor t = source->load(name);
    if (at::isFloatingType(t.scalar_type())) t = t.to(plan.dtype);
    tensors.emplace_back(name, t);
  }
  return tensors;
}

/// config.json (with quantization_config), quantize_config.json for GPTQ, and the tokenizer and
/// generation files, into `tmp`.
void write_model_files(const Model& model, const Plan& plan, const fs::path& tmp);

/// The kernel lint of a layer's packed linears (a float router is no kernel's business), added
/// to `warnings` where not already there: layers of one layout repeat the same lines, an MoE
/// model's sparse layers add their experts' names.
void lint_layer(const Plan& plan, DecoderLayer& layer,
                const std::map<std::string, QuantizedTensor>& quantized,
                std::vector<std::string>& warnings) {
  if (!plan.layout) return;
  std::vector<LinearShape> shapes;
  for (const std::string& name : layer.linear_names()) {
    if (quantized.count(name) == 0) continue;
    const at::Tensor& w = layer.linear(name).weight;
    shapes.push_back({name, w.size(0), w.size(1)});
  }
  for (std::string& w : kernel_lint(*plan.layout, shapes)) {
    if (std::find(warnings.begin(), warnings.end(), w) == warnings.end())
      warnings.push_back(std::move(w));
  }
}

/// Groups named tensors into shards of at most max_bytes (a larger tensor gets its own).
std::vector<NamedTensors> shard(NamedTensors tensors, int64_t max_bytes) {
  std::sort(tensors.begin(), tensors.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<NamedTensors> shards(1);
  int64_t in_shard = 0;
  for (auto& t : tensors) {
    const int64_t bytes = t.second.numel() * static_cast<int64_t>(t.second.element_size());
    if (in_shard > 0 && in_shard + bytes > max_bytes) {
      shards.emplace_back();
      in_shard = 0;
    }
    shards.back().push_back(std::move(t));
    in_shard += bytes;
  }
  return shards;
}

std::string tokenizer_of_llama2c(const Model& model) {
  const fs::path dir = fs::path(model.path()).parent_path();
  for (const fs::path& p : {dir / "tokenizer.bin", dir / fmt::format("tok{}.bin", model.config().vocab_size)}) {
    if (fs::exists(p)) return p.string();
  }
  return "";
}

/// Compares every tensor the model holds with what the re-read checkpoint gives (dequantized
/// for packed linears), bit for bit; returns how many were compared.
int64_t reread_check(Model& model, const std::string& dir) {
  const std::shared_ptr<WeightSource> back = open_checkpoint_weights(dir);
  int64_t compared = 0;
  const auto compare = [&](const std::string& name, const at::Tensor& mine) {
    if (!mine.defined()) return;
    CALQ_CHECK(back->contains(name), "save: re-read {}: tensor \"{}\" is missing", dir, name);
    const at::Tensor got = back->load(name).to(at::kFloat);
    // Float tensors were rounded to the stored dtype in place before writing; packed linears
    // hold the dequantized codes: either way, the model's own values must come back.
    const at::Tensor want = mine.to(at::kCPU).to(at::kFloat);
    if (!got.sizes().equals(want.sizes()) || !at::equal(got, want)) {
      const double diff = got.sizes().equals(want.sizes()) ? (got - want).abs().max().item<double>() : -1.0;
      fail("save: re-read {}: tensor \"{}\" differs from the in-memory model (max |diff| {}); "
           "the checkpoint would not reproduce this run", dir, name, diff);
    }
    ++compared;
  };
  for (int64_t i = 0; i < model.n_layers(); ++i) {
    DecoderLayer& layer = model.layer(i);
    for (const std::string& name : layer.linear_names()) {
      const Linear& l = layer.linear(name);
      compare(l.source + ".weight", l.weight);
      compare(l.source + ".bias", l.bias);
    }
    for (const std::string& norm : layer.norm_names()) {
      const Norm& n = layer.norm(norm);
      compare(n.source + ".weight", n.weight);
      compare(n.source + ".bias", n.bias);
    }
  }
  return compared;
}

/// Temporary directories of earlier exports to the same name whose process is gone (killed).
void remove_stale_temp_dirs(const fs::path& final_path) {
  const std::string prefix = "." + final_path.filename().string() + ".calq-tmp-";
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(final_path.parent_path(), ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(prefix, 0) != 0) continue;
    const long pid = std::strtol(name.c_str() + prefix.size(), nullptr, 10);
    if (pid > 0 && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) {
      log::info("save: removing {} left by an interrupted export", entry.path().string());
      fs::remove_all(entry.path(), ec);
    }
  }
}

fs::path temp_dir_for(const fs::path& final_path) { return temp_sibling(final_path); }

/// The checkpoint's certificate (certificate.h), written into the temporary directory so that it
/// appears with the checkpoint in one rename. A failing certificate is a warning, not an error:
/// the export's own re-read passed, and the certificate holds every failure for the report.
void certify(const fs::path& tmp, const fs::path& final_path, ExportResult& result) {
  Certificate cert;
  try {
    cert = write_certificate(tmp.string(), final_path.string());
  } catch (const std::exception& e) {  // never lose an export that re-read bit for bit
    cert.path = final_path.string();
    cert.failures.push_back(fmt::format("{}: the certificate could not be computed: {}",
                                        final_path.string(), e.what()));
    write_string_atomically((tmp / kCertificateFile).string(), cert.json() + "\n");
  }
  result.certificate = cert.json();
  if (cert.passed()) {
    log::info("save: certificate passed ({})", (final_path / kCertificateFile).string());
  } else {
    log::warn("save: certificate of {} fails ({} problems): {}", final_path.string(),
              cert.failures.size(), cert.failures.front());
  }
}

/// The modules a packed checkpoint keeps float, in each format's own terms: MoE routers the
/// recipe did not quantize (full names), and what lies outside the language model (a multimodal
/// Gemma 3's vision_tower and multi_modal_projector: `outside`, top-level module names).
/// compressed-tensors: `ignore` (exact names, "re:" patterns); AWQ: modules_to_not_convert
/// (matched as substrings by transformers, so full names: "mlp.gate" alone would also match
/// gate_proj); GPTQ: modules_in_block_to_quantize (the packed linears of a block, transformers'
/// GPTQConfig) and block_name_to_quantize for a prefixed language model.
void name_float_modules(Json& qc, const PackedLayout& layout, const Plan& plan,
                        const std::set<std::string>& outside, const ModelConfig& config) {
  switch (layout.format) {
    case SaveFormat::CompressedTensors:
      for (const std::string& m : plan.float_modules) qc["ignore"].push_back(m);
      // compressed-tensors matches "re:" targets with re.match on the module names of the model
      // transformers builds (compressed_tensors/utils/match.py, match_name), and transformers 5
      // names a multimodal Gemma 3's tower model.vision_tower, not the checkpoint's vision_tower:
      // the pattern takes either, else the tower's Linears are expected quantized and their
      // weight_scale reported missing (tests/interop, gemma3_mm).
      for (const std::string& m : outside) qc["ignore"].push_back("re:(.*\\.)?" + m + "\\..*");
      break;
    case SaveFormat::Awq: {
      std::vector<std::string> names(plan.float_modules.begin(), plan.float_modules.end());
      names.insert(names.end(), outside.begin(), outside.end());
      if (!names.empty()) qc["modules_to_not_convert"] = names;
      break;
    }
    case SaveFormat::Gptq:
      if (!plan.float_modules.empty())
        qc["modules_in_block_to_quantize"] = Json::array({Json(std::vector<std::string>(
            plan.packed_in_block.begin(), plan.packed_in_block.end()))});
      // The module path of the decoder layers in the model transformers builds, which optimum's
      // GPTQ conversion walks: transformers 5 nests the checkpoint's language_model.model.layers
      // as model.language_model.layers (Gemma3ForConditionalGeneration); the checkpoint path left
      // the language model's linears float there (tests/interop, gemma3_mm).
      if (!config.weight_prefix.empty())
        qc["block_name_to_quantize"] = hf_module_name(config, config.weight_prefix + "model.layers");
      break;
    case SaveFormat::Fake:
      break;
  }
}

/// Top-level module names of the tensors outside `weight_prefix` ("vision_tower", ...).
std::set<std::string> modules_outside(const Model& model) {
  std::set<std::string> out;
  const std::string& prefix = model.config().weight_prefix;
  if (prefix.empty()) return out;
  for (const std::string& name : open_model_weights(model.path())->names()) {
    if (name.rfind(prefix, 0) == 0) continue;
    out.insert(name.substr(0, name.find('.')));
  }
  return out;
}

void write_model_files(const Model& model, const Plan& plan, const fs::path& tmp) {
  const ModelConfig& c = model.config();
  Json config = base_config(model);
  set_dtype(config, plan.dtype);
  if (plan.layout) {
    config["quantization_config"] = quantization_config_json(*plan.layout);
    name_float_modules(config["quantization_config"], *plan.layout, plan, modules_outside(model), c);
  } else {
    config.erase("quantization_config");
  }
  write_string_atomically((tmp / "config.json").string(), config.dump(2) + "\n");
  write_output_marker(tmp, "export");
  if (plan.layout && plan.layout->format == SaveFormat::Gptq)
    write_string_atomically((tmp / "quantize_config.json").string(),
                            config["quantization_config"].dump(2) + "\n");
  if (c.model_type == "llama2c") {
    const std::string tok = tokenizer_of_llama2c(model);
    if (!tok.empty()) fs::copy_file(tok, tmp / fs::path(tok).filename());
  } else {
    const fs::path dir = fs::is_directory(model.path()) ? fs::path(model.path()) : fs::path(model.path()).parent_path();
    for (const char* name : kCarriedFiles) {
      if (fs::exists(dir / name)) fs::copy_file(dir / name, tmp / name);
    }
  }
}

/// Re-reads one written shard and compares every tensor with what was written, bit for bit (the
/// streaming export's check: the layers themselves are freed by the time the checkpoint is whole).
int64_t reread_shard(const std::string& file, const NamedTensors& written) {
  const std::shared_ptr<WeightSource> back = open_safetensors_source(file);
  for (const auto& [name, want] : written) {
    CALQ_CHECK(back->contains(name), "save: re-read {}: tensor \"{}\" is missing", file, name);
    const at::Tensor got = back->load(name);
    CALQ_CHECK(got.scalar_type() == want.scalar_type() && got.sizes().equals(want.sizes()) &&
                   at::equal(got, want.to(at::kCPU)),
               "save: re-read {}: tensor \"{}\" differs from what was written", file, name);
  }
  return static_cast<int64_t>(written.size());
}

void log_written(const ExportResult& result) {
  log::info("save: {} checkpoint written to {} ({} files, {:.1f} MiB, re-read: {} tensors bit-equal)",
            result.format, result.path, result.files, static_cast<double>(result.bytes) / (1 << 20),
            result.reread_tensors);
}

}  // namespace

std::vector<std::string> kernel_lint(const PackedLayout& l, const std::vector<LinearShape>& linears) {
  std::vector<std::string> w;
  const int64_t g = l.group_size;
  const bool marlin_group = g == -1 || g == 32 || g == 64 || g == 128;
  if (l.format == SaveFormat::Gptq) {
    if (!l.sym || (l.bits != 4 && l.bits != 8))
      w.push_back(fmt::format("gptq {}-bit {}: vLLM's Marlin kernels take 4/8-bit symmetric only; "
                              "this checkpoint runs on the slower gptq (exllama) path",
                              l.bits, l.sym ? "sym" : "asym"));
    if (!marlin_group)
      w.push_back(fmt::format("group size {} is not one of -1, 32, 64, 128: no Marlin kernel", g));
    if (l.act_order)
      w.push_back("desc_act: g_idx is not monotonic; kernels reorder at load and vLLM's exllama "
                  "path cannot split such row-parallel layers under tensor parallelism");
  } else if (l.format == SaveFormat::Awq) {
    if (g != 32 && g != 64 && g != 128)
      w.push_back(fmt::format("awq group size {} is not 32, 64 or 128: no awq_marlin kernel", g));
  } else if (l.format == SaveFormat::CompressedTensors) {
    if (!l.activations && !marlin_group)
      w.push_back(fmt::format("group size {} is not one of -1, 32, 64, 128: no Marlin kernel", g));
    if (!l.sym)
      w.push_back("asymmetric compressed-tensors: some transformers versions fail to load it "
                  "(llm-compressor#1618); vLLM uses zero-point Marlin");
    if (l.ct_format() == "naive-quantized")
      w.push_back(fmt::format("{}-bit weights are stored unpacked (naive-quantized, int8)", l.bits));
  }
  if (l.format != SaveFormat::CompressedTensors || !l.activations) {
    // Marlin's tile minima (docs/formats.md §2.8): n ≥ 64 and k ≥ 128 per linear.
    std::set<std::string> small;
    for (const LinearShape& linear : linears) {
      if (linear.out % 64 != 0 || linear.in % 128 != 0) small.insert(linear.name);
    }
    if (!small.empty())
      w.push_back(fmt::format("{} do not meet Marlin's 64 x 128 tile minima", fmt::join(small, ", ")));
  }
  return w;
}

std::string ExportResult::json() const {
  return Json{{"format", format},
          {"path", path},
          {"files", files},
          {"bytes", bytes},
          {"quantized_linears", quantized_linears},
          {"reread", {{"tensors", reread_tensors}, {"bit_equal", true}}},
          {"warnings", warnings}}.dump();
}

void check_save_shapes(const SaveSection& save, const SchemeSection& scheme,
                       const std::vector<LinearShape>& linears, const std::string& file) {
  if (save.format == SaveFormat::Fake) return;
  PackedLayout layout;
  layout.format = save.format;
  layout.bits = scheme.weights.bits;
  layout.group_size = scheme.weights.group_size;
  layout.sym = scheme.weights.sym;
  for (const LinearShape& linear : linears) {
    const std::string why = shape_reason(layout, linear.in, linear.out);
    CALQ_CHECK(why.empty(), "{}: save.format {}: {} [{} x {}]: {}; expected shapes the format "
               "packs, or save.format compressed-tensors / fake", file, save_format_name(save.format),
               linear.name, linear.out, linear.in, why);
  }
}

void check_save_scheme(const SaveSection& save, const SchemeSection& scheme, const std::string& file) {
  const char* format = save_format_name(save.format);
  const WeightScheme& w = scheme.weights;
  CALQ_CHECK(!scheme.activations || !scheme.activations->bmm_inputs,
             "{}: save.format {}: no checkpoint format stores the quantization of q/k/v outputs; "
             "expected scheme.activations.bmm_inputs: false for an export", file, format);
  if (save.format == SaveFormat::Fake) {
    if (scheme.activations)
      log::warn("{}: save.format fake stores weights only; the scheme's activation quantization "
                "is not in the checkpoint (use compressed-tensors for W8A8)", file);
    return;
  }
  CALQ_CHECK(w.format == WeightFormat::Int,
             "{}: save.format {}: scheme.weights.format must be int for a packed checkpoint; "
             "expected save.format fake", file, format);
  // One layout per checkpoint: GPTQModel's `dynamic` and compressed-tensors' per-module
  // config_groups would carry per-linear widths, and calq writes neither.
  CALQ_CHECK(scheme.overrides.empty() && !scheme.mixed_precision,
             "{}: save.format {}: per-linear bit widths (scheme.overrides, scheme.mixed_precision) "
             "are not written to packed checkpoints; expected save.format fake", file, format);
  CALQ_CHECK(!scheme.activations || scheme.activations->format == ActFormat::Int,
             "{}: save.format {}: scheme.activations.format {} has no packed checkpoint form here; "
             "expected save.format fake", file, format, act_format_name(scheme.activations->format));
  if (save.format == SaveFormat::Gptq || save.format == SaveFormat::Awq) {
    CALQ_CHECK(!scheme.activations,
               "{}: save.format {}: the format cannot store scheme.activations; expected "
               "compressed-tensors (int-quantized) for W8A8", file, format);
    CALQ_CHECK(w.scale_dtype == ScaleDtype::Float16,
               "{}: save.format {}: stores float16 scales; expected scheme.weights.scale_dtype: "
               "float16", file, format);
    CALQ_CHECK(w.grid == QuantGrid::Gptq || w.grid == QuantGrid::Awq,
               "{}: save.format {}: scheme.weights.grid {} has signed codes; expected gptq or awq",
               file, format, quant_grid_name(w.grid));
  }
  if (save.format == SaveFormat::Awq) {
    CALQ_CHECK(w.bits == 4 && !w.sym && w.group_size > 0,
               "{}: save.format awq: AWQ GEMM stores 4-bit asymmetric groups; scheme.weights is "
               "bits {} sym {} group_size {}; expected bits: 4, sym: false, group_size > 0",
               file, w.bits, w.sym, w.group_size);
  }
  if (save.format == SaveFormat::CompressedTensors && scheme.activations) {
    CALQ_CHECK(scheme.activations->dynamic && scheme.activations->sym,
               "{}: save.format compressed-tensors: calq writes dynamic symmetric activations "
               "only; expected scheme.activations dynamic: true, sym: true", file);
  }
}

void round_to_export(Model& model, const QuantizedLinears& quantized, const ExportOptions& o) {
  const Plan plan = plan_export(model, quantized, o);
  for (int64_t i = 0; i < model.n_layers(); ++i)
    round_layer(model.layer(i), plan, quantized[static_cast<size_t>(i)]);
}

ExportResult export_checkpoint(Model& model, const QuantizedLinears& quantized,
                               const ExportOptions& o) {
  const Plan plan = plan_export(model, quantized, o);
  const fs::path final_path = output_dir_path(o.path, "save.path");
  fs::create_directories(final_path.parent_path());
  remove_stale_temp_dirs(final_path);
  const fs::path tmp = temp_dir_for(final_path);
  fs::remove_all(tmp);
  fs::create_directories(tmp);

  ExportResult result;
  result.format = save_format_name(o.format);
  result.path = final_path.string();
  try {
    for (int64_t i = 0; i < model.n_layers(); ++i)
      round_layer(model.layer(i), plan, quantized[static_cast<size_t>(i)]);
    NamedTensors tensors;
    std::set<std::string> layer_prefixes;
    for (int64_t i = 0; i < model.n_layers(); ++i) {
      for (auto& t : layer_tensors(model.layer(i), quantized[static_cast<size_t>(i)], plan,
                                   layer_prefixes, result.quantized_linears))
        tensors.push_back(std::move(t));
    }
    for (auto& t : outer_tensors(model, layer_prefixes, plan)) tensors.push_back(std::move(t));

    const std::vector<NamedTensors> shards = shard(std::move(tensors), o.max_shard_bytes);
    ShardedWriter writer(tmp.string(), static_cast<int64_t>(shards.size()));
    for (size_t k = 0; k < shards.size(); ++k) writer.write(static_cast<int64_t>(k), shards[k]);
    result.bytes = writer.finish();
    result.files = static_cast<int64_t>(shards.size());
    write_model_files(model, plan, tmp);
    if (o.extra_files) o.extra_files(tmp.string());
    if (o.on_stage) o.on_stage("written");

    result.reread_tensors = reread_check(model, tmp.string());
    for (int64_t i = 0; i < model.n_layers(); ++i)
      lint_layer(plan, model.layer(i), quantized[static_cast<size_t>(i)], result.warnings);
    for (const std::string& w : result.warnings) log::warn("save: {}", w);
    certify(tmp, final_path, result);

    // Replace any previous export only now, and never leave the final name half-written. The
    // rules are checked again: the target may have changed while the model was quantized.
    check_output_dir(final_path, "save.path", o.overwrite);
    publish_directory(tmp.string(), final_path.string());
  } catch (...) {
    std::error_code ignored;
    fs::remove_all(tmp, ignored);
    throw;
  }
  log_written(result);
  return result;
}

struct StreamingExport::State {
  Plan plan;
  fs::path final_path;
  fs::path tmp;
  std::unique_ptr<ShardedWriter> writer;
  std::set<std::string> layer_prefixes;
  ExportResult result;
  bool finished = false;
};

StreamingExport::StreamingExport(const Model& model, ExportOptions options)
    : options_(std::move(options)), state_(std::make_unique<State>()) {
  CALQ_CHECK(!options_.extra_files,
             "save: files beside the checkpoint (the LoRC adapter) need the whole model at the end; "
             "expected no --stream with lorc");
  State& s = *state_;
  s.plan = plan_dtype(model, options_);
  s.final_path = output_dir_path(options_.path, "save.path");
  fs::create_directories(s.final_path.parent_path());
  remove_stale_temp_dirs(s.final_path);
  s.tmp = temp_dir_for(s.final_path);
  fs::remove_all(s.tmp);
  fs::create_directories(s.tmp);
  s.writer = std::make_unique<ShardedWriter>(s.tmp.string(), model.n_layers() + 1);
  s.result.format = save_format_name(options_.format);
  s.result.path = s.final_path.string();
  s.result.files = model.n_layers() + 1;
}

StreamingExport::~StreamingExport() {
  if (state_ && !state_->finished) {
    std::error_code ignored;
    fs::remove_all(state_->tmp, ignored);
  }
}

void StreamingExport::write_layer(const Model& model, int64_t index, DecoderLayer& layer,
                                  const std::map<std::string, QuantizedTensor>& quantized) {
  State& s = *state_;
  plan_layer(s.plan, layer, model.layer_schema(index), index, quantized, options_,
             model.config().model_type);
  round_layer(layer, s.plan, quantized);
  lint_layer(s.plan, layer, quantized, s.result.warnings);
  const NamedTensors tensors =
      layer_tensors(layer, quantized, s.plan, s.layer_prefixes, s.result.quantized_linears);
  s.writer->write(index, tensors);
  s.result.reread_tensors += reread_shard((s.tmp / s.writer->file_name(index)).string(), tensors);
}

ExportResult StreamingExport::finish(const Model& model) {
  State& s = *state_;
  const NamedTensors outer = outer_tensors(model, s.layer_prefixes, s.plan);
  s.writer->write(model.n_layers(), outer);
  s.result.reread_tensors +=
      reread_shard((s.tmp / s.writer->file_name(model.n_layers())).string(), outer);
  s.result.bytes = s.writer->finish();
  write_model_files(model, s.plan, s.tmp);
  if (options_.on_stage) options_.on_stage("written");
  for (const std::string& w : s.result.warnings) log::warn("save: {}", w);
  certify(s.tmp, s.final_path, s.result);
  check_output_dir(s.final_path, "save.path", options_.overwrite);
  publish_directory(s.tmp.string(), s.final_path.string());
  s.finished = true;
  log_written(s.result);
  return s.result;
}

}  // namespace calq::core
