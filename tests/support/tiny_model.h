// Writes tiny random HF checkpoints (config.json + model.safetensors) of every family calq runs,
// so model, calibration and pass tests need no downloaded data. Weights are seeded normal draws
// (std 0.1; norm weights 1 + 0.1·N) laid out under the names transformers saves.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "core/io/safetensors.h"
#include "core/model/model.h"

namespace calq::test {

struct TinyModelSpec {
  /// llama | mistral | qwen2 | qwen3 | phi3 | opt | gpt2, and the MoE families mixtral | qwen2_moe |
  /// qwen3_moe (4 experts of `intermediate`, top-2; qwen3_moe's layer 0 dense)
  std::string model_type = "llama";
  int64_t vocab = 32;
  int64_t hidden = 16;
  int64_t intermediate = 24;  ///< gpt2 ignores it (n_inner null -> 4·hidden)
  int64_t layers = 2;
  int64_t heads = 4;
  int64_t kv_heads = 2;  ///< Llama family only
  int64_t positions = 64;
  int64_t sliding_window = 0;    ///< mistral: > 0 writes "sliding_window"
  bool tied = false;             ///< Llama family; opt and gpt2 are always tied
  bool gpt2_bare_names = false;  ///< gpt2: OpenAI-converted names (no "transformer.", mask buffers)
  uint64_t seed = 0;
  /// Called on the tensors just before they are written: tests plant a NaN or a dead channel.
  std::function<void(core::NamedTensors&)> edit;
};

inline void write_tiny_model(const std::filesystem::path& dir, const TinyModelSpec& s) {
  std::filesystem::create_directories(dir);
  at::manual_seed(s.seed);
  core::NamedTensors t;
  const auto mat = [&](const std::string& name, std::vector<int64_t> shape) {
    t.emplace_back(name, at::randn(shape, at::kFloat) * 0.1);
  };
  const auto norm = [&](const std::string& name, int64_t n) {
    t.emplace_back(name, 1.0 + at::randn({n}, at::kFloat) * 0.1);
  };
  const int64_t H = s.hidden, I = s.intermediate, hd = s.hidden / s.heads;
  nlohmann::json c;
  c["model_type"] = s.model_type;
  c["vocab_size"] = s.vocab;
  if (s.model_type == "opt") {
    c.update({{"hidden_size", H},
              {"ffn_dim", I},
              {"num_hidden_layers", s.layers},
              {"num_attention_heads", s.heads},
              {"max_position_embeddings", s.positions},
              {"do_layer_norm_before", true},
              {"word_embed_proj_dim", H},
              {"torch_dtype", "float32"}});
    const std::string p = "model.decoder.";
    mat(p + "embed_tokens.weight", {s.vocab, H});
    mat(p + "embed_positions.weight", {s.positions + 2, H});
    for (int64_t i = 0; i < s.layers; ++i) {
      const std::string l = p + "layers." + std::to_string(i) + ".";
      for (const char* proj : {"q_proj", "k_proj", "v_proj", "out_proj"}) {
        mat(l + "self_attn." + proj + ".weight", {H, H});
        mat(l + "self_attn." + proj + ".bias", {H});
      }
      norm(l + "self_attn_layer_norm.weight", H);
      mat(l + "self_attn_layer_norm.bias", {H});
      mat(l + "fc1.weight", {I, H});
      mat(l + "fc1.bias", {I});
      mat(l + "fc2.weight", {H, I});
      mat(l + "fc2.bias", {H});
      norm(l + "final_layer_norm.weight", H);
      mat(l + "final_layer_norm.bias", {H});
    }
    norm(p + "final_layer_norm.weight", H);
    mat(p + "final_layer_norm.bias", {H});
  } else if (s.model_type == "gpt2") {
    const int64_t F = 4 * H;
    c.update({{"n_embd", H},
              {"n_head", s.heads},
              {"n_layer", s.layers},
              {"n_positions", s.positions},
              {"n_inner", nullptr},
              {"activation_function", "gelu_new"},
              {"layer_norm_epsilon", 1e-5}});
    const std::string p = s.gpt2_bare_names ? "" : "transformer.";
    mat(p + "wte.weight", {s.vocab, H});
    mat(p + "wpe.weight", {s.positions, H});
    for (int64_t i = 0; i < s.layers; ++i) {
      const std::string l = p + "h." + std::to_string(i) + ".";
      norm(l + "ln_1.weight", H);
      mat(l + "ln_1.bias", {H});
      mat(l + "attn.c_attn.weight", {H, 3 * H});  // Conv1D: [in, out]
      mat(l + "attn.c_attn.bias", {3 * H});
      mat(l + "attn.c_proj.weight", {H, H});
      mat(l + "attn.c_proj.bias", {H});
      norm(l + "ln_2.weight", H);
      mat(l + "ln_2.bias", {H});
      mat(l + "mlp.c_fc.weight", {H, F});
      mat(l + "mlp.c_fc.bias", {F});
      mat(l + "mlp.c_proj.weight", {F, H});
      mat(l + "mlp.c_proj.bias", {H});
      if (s.gpt2_bare_names) {
        t.emplace_back(l + "attn.bias", at::ones({1, 1, s.positions, s.positions}).tril());
        t.emplace_back(l + "attn.masked_bias", at::full({}, -1e4));
      }
    }
    norm(p + "ln_f.weight", H);
    mat(p + "ln_f.bias", {H});
  } else {  // llama, mistral, qwen2, qwen3 — older spelling (torch_dtype, top-level rope_theta)
    c.update({{"hidden_size", H},
              {"intermediate_size", I},
              {"num_hidden_layers", s.layers},
              {"num_attention_heads", s.heads},
              {"num_key_value_heads", s.kv_heads},
              {"max_position_embeddings", s.positions},
              {"rms_norm_eps", 1e-5},
              {"rope_theta", 10000.0},
              {"rope_scaling", nullptr},
              {"hidden_act", "silu"},
              {"tie_word_embeddings", s.tied},
              {"torch_dtype", "float32"}});
    if (s.sliding_window > 0)
      c["sliding_window"] = s.sliding_window;
    const bool mixtral = s.model_type == "mixtral";
    const bool qwen_moe = s.model_type == "qwen2_moe" || s.model_type == "qwen3_moe";
    const int64_t experts = mixtral || qwen_moe ? 4 : 0;
    if (mixtral) c.update({{"num_local_experts", experts}, {"num_experts_per_tok", 2}});
    if (qwen_moe) {
      c.update({{"num_experts", experts}, {"num_experts_per_tok", 2},
                {"moe_intermediate_size", I}, {"norm_topk_prob", s.model_type == "qwen3_moe"},
                {"decoder_sparse_step", 1}, {"use_sliding_window", false}});
      c["mlp_only_layers"] = s.model_type == "qwen3_moe" ? nlohmann::json::array({0})
                                                          : nlohmann::json::array();
      if (s.model_type == "qwen2_moe") c["shared_expert_intermediate_size"] = 2 * I;
    }
    const bool qkv_bias = s.model_type == "qwen2" || s.model_type == "qwen2_moe";
    mat("model.embed_tokens.weight", {s.vocab, H});
    for (int64_t i = 0; i < s.layers; ++i) {
      const std::string l = "model.layers." + std::to_string(i) + ".";
      norm(l + "input_layernorm.weight", H);
      if (s.model_type == "phi3") {  // fused as Phi3Attention / Phi3MLP store them
        mat(l + "self_attn.qkv_proj.weight", {(s.heads + 2 * s.kv_heads) * hd, H});
        mat(l + "self_attn.o_proj.weight", {H, s.heads * hd});
        norm(l + "post_attention_layernorm.weight", H);
        mat(l + "mlp.gate_up_proj.weight", {2 * I, H});
        mat(l + "mlp.down_proj.weight", {H, I});
        continue;
      }
      mat(l + "self_attn.q_proj.weight", {s.heads * hd, H});
      mat(l + "self_attn.k_proj.weight", {s.kv_heads * hd, H});
      mat(l + "self_attn.v_proj.weight", {s.kv_heads * hd, H});
      if (qkv_bias) {
        mat(l + "self_attn.q_proj.bias", {s.heads * hd});
        mat(l + "self_attn.k_proj.bias", {s.kv_heads * hd});
        mat(l + "self_attn.v_proj.bias", {s.kv_heads * hd});
      }
      mat(l + "self_attn.o_proj.weight", {H, s.heads * hd});
      if (s.model_type == "qwen3" || s.model_type == "qwen3_moe") {
        norm(l + "self_attn.q_norm.weight", hd);
        norm(l + "self_attn.k_norm.weight", hd);
      }
      norm(l + "post_attention_layernorm.weight", H);
      const bool sparse = experts > 0 && !(s.model_type == "qwen3_moe" && i == 0);
      if (!sparse) {
        mat(l + "mlp.gate_proj.weight", {I, H});
        mat(l + "mlp.up_proj.weight", {I, H});
        mat(l + "mlp.down_proj.weight", {H, I});
        continue;
      }
      const std::string b = l + (mixtral ? "block_sparse_moe." : "mlp.");
      mat(b + "gate.weight", {experts, H});
      for (int64_t e = 0; e < experts; ++e) {
        const std::string x = b + "experts." + std::to_string(e) + ".";
        mat(x + (mixtral ? "w1" : "gate_proj") + ".weight", {I, H});
        mat(x + (mixtral ? "w3" : "up_proj") + ".weight", {I, H});
        mat(x + (mixtral ? "w2" : "down_proj") + ".weight", {H, I});
      }
      if (s.model_type == "qwen2_moe") {
        mat(b + "shared_expert.gate_proj.weight", {2 * I, H});
        mat(b + "shared_expert.up_proj.weight", {2 * I, H});
        mat(b + "shared_expert.down_proj.weight", {H, 2 * I});
        mat(b + "shared_expert_gate.weight", {1, H});
      }
    }
    norm("model.norm.weight", H);
    if (!s.tied)
      mat("lm_head.weight", {s.vocab, H});
  }
  std::ofstream(dir / "config.json") << c.dump(2);
  if (s.edit)
    s.edit(t);
  core::write_safetensors((dir / "model.safetensors").string(), t);
}

/// Loads a model written by write_tiny_model (no tokenizer: the tiny models have none).
/// The small model most pass and calibration tests quantize: hidden 32, intermediate 48 (wide
/// enough for groups of 16), `layers` layers, weights drawn from `seed`.
inline TinyModelSpec small_model(uint64_t seed = 0, int64_t layers = 2,
                                 const std::string& model_type = "llama") {
  TinyModelSpec spec;
  spec.model_type = model_type;
  spec.hidden = 32;
  spec.intermediate = 48;
  spec.layers = layers;
  spec.seed = seed;
  return spec;
}

/// `n` calibration windows of `seq` token ids of `spec`'s vocabulary, drawn from the global
/// generator after at::manual_seed(seed).
inline at::Tensor seeded_windows(const TinyModelSpec& spec, uint64_t seed, int64_t n = 4,
                                 int64_t seq = 12) {
  at::manual_seed(seed);
  return at::randint(0, spec.vocab, {n, seq}, at::kLong);
}

inline std::unique_ptr<core::Model> load_tiny_model(const std::filesystem::path& dir) {
  core::LoadOptions options;
  options.path = dir.string();
  options.load_tokenizer = false;
  return core::load_model(options);
}

}  // namespace calq::test
