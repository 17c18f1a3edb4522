// Linear/Model basics and load_model: the family table (model_type -> builder, the one list of
// HF architectures calq runs), llama2.c detection by the .bin extension, and tokenizer discovery.
#include "core/model/model.h"

#include <ATen/core/grad_mode.h>
#include <filesystem>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <fmt/format.h>

#include "core/error.h"
#include "core/io/small_file.h"
#include "core/model/allocation_policy.h"
#include "core/model/compute_support.h"
#include "core/model/family_table.h"
#include "core/model/kv_cache.h"
#include "core/model/llama.h"
#include "core/model/llama2c.h"
#include "core/model/moe_weights.h"
#include "core/model/weight_source.h"
#include "core/checkpoint/checkpoint_weights.h"
#include "core/tokenizer/tokenizer.h"

namespace calq::core {
namespace fs = std::filesystem;

namespace {

// One Matmul-stage extension at most: two would each claim the whole output.
void check_one_matmul(const std::vector<std::shared_ptr<const LinearExtension>>& extensions) {
  int matmuls = 0;
  for (const auto& e : extensions) matmuls += e->stage() == LinearStage::Matmul ? 1 : 0;
  CALQ_ASSERT(matmuls <= 1, "a linear holds {} matmul-stage extensions; expected one at most",
              matmuls);
}

}  // namespace

at::Tensor Linear::forward(const at::Tensor& x) const {
  // One GEMM into an explicitly allocated [rows, out] output. On LibTorch 1.13 this measured 2x
  // faster than at::linear on [batch, seq, in] inputs (sotu-llama-6L layer, batch 8: 0.12 s vs
  // 0.23 s on one core); the numbers are the same GEMM (addmm for the bias, as at::linear).
  const int64_t in = weight.size(1), out_features = weight.size(0);
  std::vector<int64_t> shape = x.sizes().vec();
  shape.back() = out_features;
  LinearFlow flow{x.reshape({-1, in}), at::Tensor()};
  const auto run_stage = [&](LinearStage stage) {
    for (const auto& e : extensions_)
      if (e->stage() == stage) e->apply(*this, flow);
  };
  for (const auto& e : extensions_) {
    if (e->stage() == LinearStage::Matmul) {
      e->apply(*this, flow);
      return flow.output.view(shape);
    }
  }
  run_stage(LinearStage::Input);
  const at::Tensor& x2d = flow.input;
  if (at::GradMode::is_enabled() && (x2d.requires_grad() || weight.requires_grad())) {
    // Autograd (LKD, QAT) cannot record the out= variants below.
    flow.output = bias.defined() ? at::addmm(bias, x2d, weight.t()) : at::mm(x2d, weight.t());
  } else {
    flow.output = at::empty({x2d.size(0), out_features}, x.options());
    if (bias.defined()) {
      at::addmm_out(flow.output, bias, x2d, weight.t());
    } else {
      at::mm_out(flow.output, x2d, weight.t());
    }
  }
  run_stage(LinearStage::Addend);
  run_stage(LinearStage::Output);
  return flow.output.view(shape);
}

void Linear::put(std::shared_ptr<const LinearExtension> extension) {
  CALQ_ASSERT(extension != nullptr, "Linear::put of no extension");
  for (auto& e : extensions_) {
    if (e->kind() == extension->kind()) {
      e = std::move(extension);
      return;
    }
  }
  extensions_.push_back(std::move(extension));
  check_one_matmul(extensions_);
}

void Linear::set_extensions(std::vector<std::shared_ptr<const LinearExtension>> extensions) {
  extensions_.clear();
  for (auto& e : extensions) put(std::move(e));
}

at::Tensor Model::forward(const at::Tensor& ids, const LinearObserver& observer) {
  ForwardContext ctx = make_context(ids.size(-1));
  ctx.observer = observer;
  at::Tensor hidden = embed(ids);
  for (int64_t i = 0; i < n_layers(); ++i)
    hidden = layer(i).forward(hidden, ctx);
  return logits(hidden);
}

at::Tensor Model::forward_cached(const at::Tensor& ids, KvCache& cache) {
  at::NoGradGuard no_grad;  // a cache is for inference: no graph may hold its tensors
  const int64_t past = cache.length(), n_new = ids.size(-1);
  CALQ_CHECK(n_new > 0, "{}: an incremental forward of no tokens; expected at least one", path_);
  ForwardContext ctx = make_context(n_new, past);
  ctx.kv_cache = &cache;
  at::Tensor hidden = embed(ids, past);
  for (int64_t i = 0; i < n_layers(); ++i)
    hidden = layer(i).forward(hidden, ctx);
  cache.advance(n_new);
  return logits(hidden.narrow(1, n_new - 1, 1)).squeeze(1);
}

namespace {

void check_options(const LoadOptions& options) {
  CALQ_CHECK(!options.path.empty(),
             "model path is empty; expected an HF model directory or a llama2.c .bin file");
  // (describe_non_regular, not fs::exists: that throws on a symlink loop or a denied path.)
  const std::string kind = describe_non_regular(options.path);  // a FIFO, /dev/zero...
  CALQ_CHECK(kind != "missing",
             "{}: no such file or directory; expected an HF model directory or a llama2.c .bin "
             "file",
             options.path);
  CALQ_CHECK(kind.empty() || kind == "a directory",
             "{}: {}; expected an HF model directory or a llama2.c .bin file", options.path, kind);
  const std::string& d = options.device;
  const bool cuda_index = d.rfind("cuda:", 0) == 0 && d.size() > 5 &&
                          d.find_first_not_of("0123456789", 5) == std::string::npos;
  CALQ_CHECK(d == "cpu" || d == "cuda" || cuda_index,
             "device \"{}\" is unknown; expected cpu or cuda", d);
  CALQ_CHECK(d == "cpu" || at::hasCUDA(),
             "device \"{}\": this LibTorch build has no CUDA; expected cpu", d);
  const c10::ScalarType t = options.compute_dtype;
  CALQ_CHECK(t == at::kFloat || t == at::kHalf || t == at::kBFloat16,
             "compute dtype {} is not supported; expected float32, float16 or bfloat16",
             c10::toString(t));
  check_compute_support(d, t);  // before any weight is read
}

std::unique_ptr<Model> load_hf_model(const LoadOptions& options) {
  const fs::path path(options.path);
  const fs::path dir = fs::is_directory(path) ? path : path.parent_path();
  const fs::path config_path = dir / "config.json";
  CALQ_CHECK(fs::exists(config_path),
             "{}: no config.json beside the weights; expected an HF model directory", dir.string());
  ModelConfig config = read_hf_config(config_path.string());
  const FamilyRow* family = find_family(config.model_type);
  CALQ_ASSERT(family != nullptr, "read_hf_config accepted model_type \"{}\" that has no row",
              config.model_type);
  std::shared_ptr<WeightSource> weights =
      split_fused_experts(open_checkpoint_weights(options.path), config);
  return family->build(std::move(config), std::move(weights), options);
}

// The tokenizer to load when none is named: the HF files in the model directory, or for a
// llama2.c model tokenizer.bin (run.c's default) or tok{vocab}.bin (tokenizer.py's export name)
// beside the .bin. Empty when there is none (HF fixtures have none: not an error).
std::string find_tokenizer(const LoadOptions& options, const Model& model, bool llama2c) {
  const fs::path path(options.path);
  const fs::path dir = fs::is_directory(path) ? path : path.parent_path();
  const auto exists = [&](const std::string& name) { return fs::exists(dir / name); };
  const bool has_hf = exists("tokenizer.json") || exists("tokenizer.model") ||
                      (exists("vocab.json") && exists("merges.txt"));
  if (!llama2c && has_hf)
    return dir.string();
  // llama2.c tokenizers; an HF-layout export of a llama2.c model carries its own too.
  if (exists("tokenizer.bin"))
    return (dir / "tokenizer.bin").string();
  const std::string tok = fmt::format("tok{}.bin", model.config().vocab_size);
  return exists(tok) ? (dir / tok).string() : std::string();
}

}  // namespace

std::shared_ptr<WeightSource> open_model_weights(const std::string& path) {
  const fs::path p(path);
  if (fs::is_regular_file(p) && p.extension() == ".bin")
    return open_llama2c_source(path, read_llama2c_config(path));
  // An MoE checkpoint with fused expert tensors is presented per expert, as the model reads it.
  const fs::path dir = fs::is_directory(p) ? p : p.parent_path();
  if (fs::exists(dir / "config.json")) {
    const ModelConfig config = read_hf_config((dir / "config.json").string());
    if (config.moe.n_experts > 0) return split_fused_experts(open_checkpoint_weights(path), config);
  }
  return open_checkpoint_weights(path);
}

std::unique_ptr<Model> load_model(const LoadOptions& options) {
  check_options(options);
  keep_freed_memory_in_process();  // forwards reuse their activations' pages (see header)
  const fs::path path(options.path);
  const bool llama2c = fs::is_regular_file(path) && path.extension() == ".bin";
  std::unique_ptr<Model> model;
  if (llama2c) {
    ModelConfig config = read_llama2c_config(options.path);
    auto source = open_llama2c_source(options.path, config);
    model = make_llama_model(std::move(config), std::move(source), options);
  } else {
    model = load_hf_model(options);
  }
  if (options.load_tokenizer) {
    const std::string tokenizer_path = options.tokenizer_path.empty()
                                           ? find_tokenizer(options, *model, llama2c)
                                           : options.tokenizer_path;
    if (!tokenizer_path.empty()) {
      std::shared_ptr<const Tokenizer> tokenizer = load_tokenizer(tokenizer_path);
      check_tokenizer_fits(*tokenizer, model->config().vocab_size);
      model->set_tokenizer(std::move(tokenizer));
    }
  }
  return model;
}

}  // namespace calq::core
