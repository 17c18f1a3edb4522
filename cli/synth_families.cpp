#include "cli/synth_families.h"

#include <nlohmann/json.hpp>

#include "core/model/gemma.h"
#include "core/model/llama.h"
#include "core/model/phi3.h"

namespace calq::cli {
namespace {

using Json = nlohmann::json;

// The fields every row shares (hidden_size, heads, head_dim, vocab_size, tie_word_embeddings,
// torch_dtype) are written by cmd_synth.cpp; a row adds what its family's config class reads.

// Llama 1/2 (LlamaConfig): what `calq synth` has always written, field for field.
void llama_config(const SynthShape&, Json& c) {
  c.update({{"architectures", {"LlamaForCausalLM"}},
            {"model_type", "llama"},
            {"hidden_act", "silu"},
            {"rms_norm_eps", 1e-5},
            {"rope_theta", 10000.0},
            {"max_position_embeddings", 4096},
            {"attention_bias", false},
            {"mlp_bias", false}});
}

// Llama 3.1 / 3.2 (meta-llama/Llama-3.1-8B config.json): llama3 RoPE scaling of an 8192-token
// original context to 128K, theta 500000.
void llama3_config(const SynthShape& s, Json& c) {
  llama_config(s, c);
  c.erase("rope_theta");
  c["max_position_embeddings"] = 131072;
  c["rope_parameters"] = {{"rope_type", "llama3"},
                          {"rope_theta", 500000.0},
                          {"factor", 8.0},
                          {"low_freq_factor", 1.0},
                          {"high_freq_factor", 4.0},
                          {"original_max_position_embeddings", 8192}};
}

// Qwen3 dense (Qwen/Qwen3-8B config.json): explicit head_dim, per-head q/k RMSNorms (implied by
// the model type), no bias, no sliding window.
void qwen3_config(const SynthShape& s, Json& c) {
  c.update({{"architectures", {"Qwen3ForCausalLM"}},
            {"model_type", "qwen3"},
            {"hidden_act", "silu"},
            {"rms_norm_eps", 1e-6},
            {"rope_parameters", {{"rope_type", "default"}, {"rope_theta", 1000000.0}}},
            {"max_position_embeddings", 40960},
            {"attention_bias", false},
            {"use_sliding_window", false},
            {"sliding_window", nullptr},
            {"max_window_layers", s.layers}});
}

// Gemma 3 text (google/gemma-3-1b-pt config.json): (1 + w) norms, four per layer plus q/k norms
// (implied by the model type), query_pre_attn_scalar = head_dim, five windowed layers then one
// global (layer_types and the older sliding_window_pattern agree), a local RoPE base for the
// windowed layers, no soft-capping.
void gemma3_config(const SynthShape& s, Json& c) {
  constexpr int64_t kPattern = 6;
  Json types = Json::array();
  for (int64_t i = 0; i < s.layers; ++i)
    types.push_back((i + 1) % kPattern != 0 ? "sliding_attention" : "full_attention");
  c.update({{"architectures", {"Gemma3ForCausalLM"}},
            {"model_type", "gemma3_text"},
            {"hidden_activation", "gelu_pytorch_tanh"},
            {"rms_norm_eps", 1e-6},
            {"query_pre_attn_scalar", s.head_dim},
            {"sliding_window", 512},
            {"sliding_window_pattern", kPattern},
            {"layer_types", types},
            {"rope_theta", 1000000.0},
            {"rope_local_base_freq", 10000.0},
            {"max_position_embeddings", 32768},
            {"attention_bias", false},
            {"attn_logit_softcapping", nullptr},
            {"final_logit_softcapping", nullptr}});
}

// Phi-3 / Phi-4 (microsoft/Phi-3-mini-4k-instruct, microsoft/phi-4 config.json): fused
// qkv_proj / gate_up_proj (the schema's), full rotary, no window, no longrope (a 4K model).
void phi3_config(const SynthShape& s, Json& c) {
  // Phi3Config's pad_token_id defaults to 32000, past a smaller synth vocabulary's end.
  c["pad_token_id"] = s.vocab > 32000 ? Json(32000) : Json(nullptr);
  c.update({{"architectures", {"Phi3ForCausalLM"}},
            {"model_type", "phi3"},
            {"hidden_act", "silu"},
            {"rms_norm_eps", 1e-5},
            {"rope_theta", 10000.0},
            {"max_position_embeddings", 4096},
            {"original_max_position_embeddings", 4096},
            {"sliding_window", nullptr},
            {"attention_bias", false}});
}

// Mixtral (mistralai/Mixtral-8x7B-v0.1 config.json): every layer sparse, intermediate_size is
// each expert's, theta 1e6, no window.
void mixtral_config(const SynthShape& s, Json& c) {
  c.update({{"architectures", {"MixtralForCausalLM"}},
            {"model_type", "mixtral"},
            {"hidden_act", "silu"},
            {"rms_norm_eps", 1e-5},
            {"rope_theta", 1000000.0},
            {"max_position_embeddings", 32768},
            {"sliding_window", nullptr},
            {"num_local_experts", s.experts},
            {"num_experts_per_tok", s.top_k},
            {"router_jitter_noise", 0.0}});
  c["intermediate_size"] = s.expert_intermediate;
}

// Qwen3-MoE (Qwen/Qwen3-30B-A3B config.json): Qwen3 attention (q/k norms, explicit head_dim),
// every layer sparse, norm_topk_prob, moe_intermediate_size per expert.
void qwen3_moe_config(const SynthShape& s, Json& c) {
  qwen3_config(s, c);
  c.update({{"architectures", {"Qwen3MoeForCausalLM"}},
            {"model_type", "qwen3_moe"},
            {"num_experts", s.experts},
            {"num_experts_per_tok", s.top_k},
            {"moe_intermediate_size", s.expert_intermediate},
            {"norm_topk_prob", true},
            {"decoder_sparse_step", 1},
            {"mlp_only_layers", Json::array()}});
}

// One row per --family. vocab and tied are the released models' (Llama 2: 32000 untied; Llama 3:
// 128256 untied (8B); Qwen3: 151936 untied (8B); Gemma 3: 262144 tied).
// Phi-3: 32064 untied; Mixtral: 32000 untied; Qwen3-MoE: 151936 untied.
constexpr SynthFamily kSynthFamilies[] = {
    {"llama", 32000, false, false, llama_config, core::llama_layer_schema},
    {"llama3", 128256, false, false, llama3_config, core::llama_layer_schema},
    {"qwen3", 151936, false, false, qwen3_config, core::llama_layer_schema},
    {"gemma3", 262144, true, false, gemma3_config, core::gemma_layer_schema},
    {"phi3", 32064, false, false, phi3_config, core::phi3_layer_schema},
    {"mixtral", 32000, false, true, mixtral_config, core::llama_layer_schema},
    {"qwen3_moe", 151936, false, true, qwen3_moe_config, core::llama_layer_schema},
};

}  // namespace

const SynthFamily* find_synth_family(std::string_view name) {
  for (const SynthFamily& f : kSynthFamilies)
    if (name == f.name) return &f;
  return nullptr;
}

std::string synth_family_list() {
  std::string out;
  for (const SynthFamily& f : kSynthFamilies)
    out += (out.empty() ? "" : ", ") + std::string(f.name);
  return out;
}

}  // namespace calq::cli
