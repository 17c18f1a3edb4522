// Each family's config.json reader (core/model/model_config.cpp, gemma_config.cpp, phi3_config.cpp), named by the family table
// (core/model/family_table.cpp). Internal to core/model.
#pragma once

#include <string>

#include <nlohmann/json_fwd.hpp>

#include "core/model/model_config.h"

namespace calq::core {

class ConfigFields;

/// The fields every rotary decoder shares: vocab, hidden, intermediate, layers, heads, kv heads,
/// head_dim (hidden / heads when absent), max positions, rms_norm_eps.
void parse_rotary_decoder_dims(const std::string& path, const ConfigFields& f, ModelConfig& c);

void parse_llama_config(const std::string& path, const nlohmann::json& j, const ConfigFields& f,
                        ModelConfig& c);
void parse_opt_config(const std::string& path, const nlohmann::json& j, const ConfigFields& f,
                      ModelConfig& c);
void parse_gemma_config(const std::string& path, const nlohmann::json& j, const ConfigFields& f,
                        ModelConfig& c);
void parse_gemma3_multimodal_config(const std::string& path, const nlohmann::json& j,
                                    const ConfigFields& f, ModelConfig& c);
void parse_mixtral_config(const std::string& path, const nlohmann::json& j, const ConfigFields& f,
                          ModelConfig& c);
void parse_qwen_moe_config(const std::string& path, const nlohmann::json& j,
                           const ConfigFields& f, ModelConfig& c);
void parse_phi3_config(const std::string& path, const nlohmann::json& j, const ConfigFields& f,
                       ModelConfig& c);
void parse_gpt2_config(const std::string& path, const nlohmann::json& j, const ConfigFields& f,
                       ModelConfig& c);

}  // namespace calq::core
