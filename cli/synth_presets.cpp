#include "cli/synth_presets.h"

namespace calq::cli {
namespace {

// From each model's config.json on the Hugging Face hub (vocab 0: the family's default, which
// is the same number).
constexpr SynthPreset kPresets[] = {
    // name          family    hidden intermediate layers heads kv  head_dim vocab
    {"llama-7b", "llama", 4096, 11008, 32, 32, 32, 0, 0},      // meta-llama/Llama-2-7b-hf
    {"llama3-8b", "llama3", 4096, 14336, 32, 32, 8, 0, 0},     // meta-llama/Llama-3.1-8B
    {"qwen3-8b", "qwen3", 4096, 12288, 36, 32, 8, 128, 0},     // Qwen/Qwen3-8B
    {"gemma3-1b", "gemma3", 1152, 6912, 26, 4, 1, 256, 0},     // google/gemma-3-1b-pt
    {"phi3-mini", "phi3", 3072, 8192, 32, 32, 32, 0, 0},       // microsoft/Phi-3-mini-4k-instruct
    {"phi4", "phi3", 5120, 17920, 40, 40, 10, 0, 100352},      // microsoft/phi-4
    //                                                   experts top_k expert_intermediate
    {"mixtral-8x7b", "mixtral", 4096, 14336, 32, 32, 8, 0, 0, 8, 2, 0},  // mistralai/Mixtral-8x7B-v0.1
    {"qwen3-30b-a3b", "qwen3_moe", 2048, 6144, 48, 32, 4, 128, 0, 128, 8, 768},  // Qwen/Qwen3-30B-A3B
};

}  // namespace

const SynthPreset* find_synth_preset(std::string_view name) {
  for (const SynthPreset& p : kPresets)
    if (name == p.name) return &p;
  return nullptr;
}

std::string synth_preset_list() {
  std::string out;
  for (const SynthPreset& p : kPresets) out += (out.empty() ? "" : ", ") + std::string(p.name);
  return out;
}

}  // namespace calq::cli
