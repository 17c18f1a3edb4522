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
/// `partial_rotary`: the family rotates the first partial_rotary_factor · head_dim channels only
/// (Phi-3's apply_rotary_pos_emb); elsewhere a factor other than 1 is refused.
RopeSpec parse_rope(const std::string& path, const nlohmann::json& config, int64_t max_positions,
                    double default_theta = 10000.0, bool partial_rotary = false);

}  // namespace calq::core
