// Each family's config.json reader (core/model/model_config.cpp), named by the family table
// (core/model/family_table.cpp). Internal to core/model.
#pragma once

#include <string>

#include <nlohmann/json_fwd.hpp>

#include "core/model/model_config.h"

namespace calq::core {

class ConfigFields;

void parse_llama_config(const std::string& path, const nlohmann::json& j, const ConfigFields& f,
                        ModelConfig& c);
void parse_opt_config(const std::string& path, const nlohmann::json& j, const ConfigFields& f,
                      ModelConfig& c);
void parse_gpt2_config(const std::string& path, const nlohmann::json& j, const ConfigFields& f,
                       ModelConfig& c);

}  // namespace calq::core
