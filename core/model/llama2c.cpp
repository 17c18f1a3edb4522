// llama2.c legacy .bin reader. Layout from karpathy/llama2.c run.c (read_checkpoint,
// memory_map_weights) and export.py legacy_export: a 28-byte header, then float32 arrays in a
// fixed order, each layer-stacked, then the unused freq_cis tables, then wcls if unshared.
#include "core/model/llama2c.h"

#include <array>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <fmt/format.h>

#include "core/error.h"

namespace calq::core {
namespace {

constexpr int64_t kHeaderBytes = 7 * 4;
constexpr int32_t kVersionedMagic = 0x616b3432;  // "ak42": export.py version ≥ 1 files
// Bounds that keep every size product below 2^60 (checked before any arithmetic).
constexpr int64_t kMaxDim = int64_t{1} << 20;
constexpr int64_t kMaxLayers = int64_t{1} << 12;
constexpr int64_t kMaxVocab = int64_t{1} << 24;
constexpr int64_t kMaxSeqLen = int64_t{1} << 24;

struct Header {
  int64_t dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab, seq_len;
  bool shared_classifier;
};

std::string describe(const Header& h) {
  return fmt::format(
      "dim {}, hidden_dim {}, n_layers {}, n_heads {}, n_kv_heads {}, vocab_size {}, "
      "seq_len {}",
      h.dim, h.hidden_dim, h.n_layers, h.n_heads, h.n_kv_heads,
      h.shared_classifier ? h.vocab : -h.vocab, h.seq_len);
}

Header read_header(const std::string& path, int64_t file_size) {
  CALQ_CHECK(file_size >= kHeaderBytes,
             "{}: truncated llama2.c checkpoint: {} bytes; expected at least the {}-byte header",
             path, file_size, kHeaderBytes);
  std::ifstream in(path, std::ios::binary);
  CALQ_CHECK(in.good(), "{}: cannot open; expected a llama2.c .bin checkpoint", path);
  std::array<int32_t, 7> v{};
  in.read(reinterpret_cast<char*>(v.data()), kHeaderBytes);
  CALQ_CHECK(in.good(), "{}: cannot read the header; expected 7 int32 values", path);
  CALQ_CHECK(v[0] != kVersionedMagic,
             "{}: a versioned llama2.c export (magic \"ak42\") is not supported; expected the "
             "legacy v0 layout (export.py --version 0)",
             path);
  Header h{v[0], v[1], v[2], v[3], v[4], v[5] < 0 ? -int64_t{v[5]} : int64_t{v[5]}, v[6], v[5] > 0};
  const auto in_range = [](int64_t x, int64_t hi) { return x > 0 && x <= hi; };
  CALQ_CHECK(in_range(h.dim, kMaxDim) && in_range(h.hidden_dim, kMaxDim) &&
                 in_range(h.n_layers, kMaxLayers) && in_range(h.n_heads, h.dim) &&
                 in_range(h.n_kv_heads, h.n_heads) && in_range(h.vocab, kMaxVocab) &&
                 in_range(h.seq_len, kMaxSeqLen),
             "{}: implausible llama2.c header ({}); expected positive sizes within limits (dims "
             "<= {}, layers <= {}, vocab <= {}) — is this a llama2.c v0 .bin?",
             path, describe(h), kMaxDim, kMaxLayers, kMaxVocab);
  CALQ_CHECK(
      h.dim % h.n_heads == 0 && h.n_heads % h.n_kv_heads == 0 && (h.dim / h.n_heads) % 2 == 0,
      "{}: llama2.c header ({}): expected n_heads to divide dim into an even head size and "
      "n_kv_heads to divide n_heads",
      path, describe(h));
  return h;
}

// One tensor of the .bin: its byte offset, shape, and for wq / wk the head count to permute.
struct Entry {
  int64_t offset = 0;
  std::vector<int64_t> shape;
  int64_t permute_heads = 0;  // 0: stored order is HF order
};

// Lays the .bin out under HF names; returns the total float count (freq_cis included).
int64_t layout(const Header& h, std::map<std::string, Entry>* entries) {
  const int64_t hd = h.dim / h.n_heads, kv_dim = h.n_kv_heads * hd, L = h.n_layers;
  int64_t offset = kHeaderBytes;  // bytes
  const auto add = [&](const std::string& name, std::vector<int64_t> shape, int64_t heads) {
    int64_t numel = 1;
    for (int64_t d : shape)
      numel *= d;
    if (entries)
      (*entries)[name] = Entry{offset, std::move(shape), heads};
    offset += 4 * numel;
  };
  // Per-layer stacked arrays in file order: name pattern, shape, heads to permute.
  const auto stacked = [&](const char* pattern, std::vector<int64_t> shape, int64_t heads) {
    for (int64_t i = 0; i < L; ++i)
      add(fmt::format(fmt::runtime(pattern), i), shape, heads);  // a runtime pattern (C++20)
  };
  add("model.embed_tokens.weight", {h.vocab, h.dim}, 0);
  stacked("model.layers.{}.input_layernorm.weight", {h.dim}, 0);
  stacked("model.layers.{}.self_attn.q_proj.weight", {h.dim, h.dim}, h.n_heads);
  stacked("model.layers.{}.self_attn.k_proj.weight", {kv_dim, h.dim}, h.n_kv_heads);
  stacked("model.layers.{}.self_attn.v_proj.weight", {kv_dim, h.dim}, 0);
  stacked("model.layers.{}.self_attn.o_proj.weight", {h.dim, h.dim}, 0);
  stacked("model.layers.{}.post_attention_layernorm.weight", {h.dim}, 0);
  stacked("model.layers.{}.mlp.gate_proj.weight", {h.hidden_dim, h.dim}, 0);  // w1
  stacked("model.layers.{}.mlp.down_proj.weight", {h.dim, h.hidden_dim}, 0);  // w2
  stacked("model.layers.{}.mlp.up_proj.weight", {h.hidden_dim, h.dim}, 0);    // w3
  add("model.norm.weight", {h.dim}, 0);
  offset += 4 * 2 * (h.seq_len * hd / 2);  // freq_cis_real, freq_cis_imag: unused (RoPE recomputed)
  if (!h.shared_classifier)
    add("lm_head.weight", {h.vocab, h.dim}, 0);
  return offset;
}

class Llama2cSource final : public WeightSource {
 public:
  Llama2cSource(std::string path, const Header& header) : path_(std::move(path)) {
    layout(header, &entries_);
  }
  const std::string& path() const override { return path_; }
  bool contains(const std::string& name) const override { return entries_.count(name) != 0; }
  std::vector<std::string> names() const override {
    std::vector<std::string> names;
    for (const auto& entry : entries_)
      names.push_back(entry.first);
    return names;
  }
  std::vector<int64_t> shape(const std::string& name) const override { return entry(name).shape; }
  at::Tensor load(const std::string& name) const override {
    const Entry& e = entry(name);
    at::Tensor t = at::empty(e.shape, at::kFloat);
    std::ifstream in(path_, std::ios::binary);
    in.seekg(e.offset);
    in.read(static_cast<char*>(t.data_ptr()), static_cast<std::streamsize>(t.nbytes()));
    CALQ_CHECK(in.good(), "{}: cannot read tensor \"{}\" ({} bytes at offset {})", path_, name,
               t.nbytes(), e.offset);
    return e.permute_heads > 0 ? permute_meta_to_hf(t, e.permute_heads) : t;
  }

 private:
  const Entry& entry(const std::string& name) const {
    const auto it = entries_.find(name);
    CALQ_CHECK(it != entries_.end(), "{}: no tensor \"{}\" in this llama2.c checkpoint", path_,
               name);
    return it->second;
  }

  std::string path_;
  std::map<std::string, Entry> entries_;
};

Header checked_header(const std::string& path) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  CALQ_CHECK(!ec, "{}: cannot read the file size ({}); expected a llama2.c .bin checkpoint", path,
             ec.message());
  const int64_t file_size = static_cast<int64_t>(size);
  const Header h = read_header(path, file_size);
  const int64_t expected = layout(h, nullptr);
  CALQ_CHECK(file_size == expected,
             "{}: {} llama2.c checkpoint: {} bytes but the header ({}) implies {}; expected "
             "exactly that size",
             path, file_size < expected ? "truncated" : "oversized", file_size, describe(h),
             expected);
  return h;
}

}  // namespace

at::Tensor permute_meta_to_hf(const at::Tensor& w, int64_t heads) {
  const int64_t rows = w.size(0);
  CALQ_ASSERT(heads > 0 && rows % (2 * heads) == 0, "{} rows for {} heads", rows, heads);
  std::vector<int64_t> view{heads, rows / heads / 2, 2};
  const std::vector<int64_t> rest(w.sizes().begin() + 1, w.sizes().end());
  view.insert(view.end(), rest.begin(), rest.end());
  return w.reshape(view).transpose(1, 2).reshape(w.sizes()).contiguous();
}

ModelConfig read_llama2c_config(const std::string& path) {
  const Header h = checked_header(path);
  ModelConfig c;
  c.source = path;
  c.model_type = "llama2c";
  c.family = Family::Llama;
  c.vocab_size = h.vocab;
  c.hidden_size = h.dim;
  c.intermediate_size = h.hidden_dim;
  c.n_layers = h.n_layers;
  c.n_heads = h.n_heads;
  c.n_kv_heads = h.n_kv_heads;
  c.head_dim = h.dim / h.n_heads;
  c.max_positions = h.seq_len;
  c.norm_eps = 1e-5;       // run.c rmsnorm, model.py norm_eps
  c.rope.theta = 10000.0;  // run.c, model.py precompute_freqs_cis
  c.tie_word_embeddings = h.shared_classifier;
  c.activation = "silu";
  c.bos_token_id = 1;  // tok512.bin / Llama SentencePiece convention
  c.eos_token_id = 2;
  c.storage_dtype = c10::ScalarType::Float;
  return c;
}

std::shared_ptr<WeightSource> open_llama2c_source(const std::string& path,
                                                  const ModelConfig& config) {
  const Header h = checked_header(path);
  CALQ_ASSERT(h.dim == config.hidden_size && h.n_layers == config.n_layers,
              "{}: config does not match the header", path);
  return std::make_shared<Llama2cSource>(path, h);
}

}  // namespace calq::core
