#include "core/model/family_table.h"

#include <fmt/format.h>

#include "core/model/family_configs.h"
#include "core/model/gemma.h"
#include "core/model/gpt2.h"
#include "core/model/llama.h"
#include "core/model/opt.h"
#include "core/model/phi3.h"

namespace calq::core {
namespace {

// One row per config.json model_type. Llama's reader and model cover the Llama-shaped families;
// what differs between them (biases, windows, q/k norms) is read from the config.
constexpr FamilyRow kFamilies[] = {
    {"llama", parse_llama_config, make_llama_model},
    {"mistral", parse_llama_config, make_llama_model},
    {"qwen2", parse_llama_config, make_llama_model},
    {"qwen3", parse_llama_config, make_llama_model},
    {"mixtral", parse_mixtral_config, make_llama_model},
    {"qwen2_moe", parse_qwen_moe_config, make_llama_model},
    {"qwen3_moe", parse_qwen_moe_config, make_llama_model},
    {"gemma2", parse_gemma_config, make_gemma_model},
    {"gemma3_text", parse_gemma_config, make_gemma_model},
    {"gemma3", parse_gemma3_multimodal_config, make_gemma_model},
    {"phi3", parse_phi3_config, make_phi3_model},
    {"opt", parse_opt_config, make_opt_model},
    {"gpt2", parse_gpt2_config, make_gpt2_model},
};

}  // namespace

const FamilyRow* find_family(std::string_view model_type) {
  for (const FamilyRow& row : kFamilies)
    if (model_type == row.model_type) return &row;
  return nullptr;
}

std::string family_type_list() {
  std::string out;
  for (const FamilyRow& row : kFamilies) out += (out.empty() ? "" : ", ") + std::string(row.model_type);
  return out;
}

}  // namespace calq::core
