#include "core/model/family_table.h"

#include <fmt/format.h>

#include "core/model/family_configs.h"
#include "core/model/gemma.h"
#include "core/model/layer_schema.h"
#include "core/model/gpt2.h"
#include "core/model/llama.h"
#include "core/model/opt.h"
#include "core/model/phi3.h"

namespace calq::core {
namespace {

// The schema column for families whose tensor names do not depend on the checkpoint.
LayerSchema llama_schema(const ModelConfig& c, const WeightSource& /*weights*/, int64_t i) {
  return llama_layer_schema(c, i);
}
LayerSchema gemma_schema(const ModelConfig& c, const WeightSource& /*weights*/, int64_t i) {
  return gemma_layer_schema(c, i);
}
LayerSchema phi3_schema(const ModelConfig& c, const WeightSource& /*weights*/, int64_t i) {
  return phi3_layer_schema(c, i);
}

// One row per config.json model_type. Llama's reader and model cover the Llama-shaped families;
// what differs between them (biases, windows, q/k norms) is read from the config.
constexpr FamilyRow kFamilies[] = {
    {"llama", parse_llama_config, make_llama_model, llama_schema},
    {"mistral", parse_llama_config, make_llama_model, llama_schema},
    {"qwen2", parse_llama_config, make_llama_model, llama_schema},
    {"qwen3", parse_llama_config, make_llama_model, llama_schema},
    {"mixtral", parse_mixtral_config, make_llama_model, llama_schema},
    {"qwen2_moe", parse_qwen_moe_config, make_llama_model, llama_schema},
    {"qwen3_moe", parse_qwen_moe_config, make_llama_model, llama_schema},
    {"gemma2", parse_gemma_config, make_gemma_model, gemma_schema},
    {"gemma3_text", parse_gemma_config, make_gemma_model, gemma_schema},
    {"gemma3", parse_gemma3_multimodal_config, make_gemma_model, gemma_schema},
    {"phi3", parse_phi3_config, make_phi3_model, phi3_schema},
    {"opt", parse_opt_config, make_opt_model, opt_layer_schema},
    {"gpt2", parse_gpt2_config, make_gpt2_model, gpt2_layer_schema},
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
