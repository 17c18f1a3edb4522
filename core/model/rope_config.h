// RopeSpec from config.json: transformers 5's "rope_parameters" or the older "rope_scaling" with
// top-level "rope_theta", the way PreTrainedConfig.standardize_rope_params reads them.
#pragma once

#include <string>

#include <nlohmann/json_fwd.hpp>

#include "core/model/rope_spec.h"

namespace calq::core {

/// Parses the RoPE fields of `config` (an HF config.json object read from `path`) for a model of
/// `max_positions` positions. Throws calq::Error naming the file and the field.
/// `default_theta` stands in for an absent rope_theta (the family config class's default).
RopeSpec parse_rope(const std::string& path, const nlohmann::json& config, int64_t max_positions,
                    double default_theta = 10000.0);

}  // namespace calq::core
