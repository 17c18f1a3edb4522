// Rotary position embedding as config.json declares it: rope_type default, linear, dynamic, yarn,
// llama3 or longrope with their parameters (transformers 5 "rope_parameters", older
// "rope_scaling" + top-level rope_theta). A light header: ModelConfig holds one; core/model/rope.h
// turns it into frequencies.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

namespace calq::core {

enum class RopeType { Default, Linear, Dynamic, Yarn, Llama3, LongRope };

/// "default", "linear", "dynamic", "yarn", "llama3", "longrope" (config.json's rope_type).
const char* rope_type_name(RopeType type);

struct RopeSpec {
  RopeType type = RopeType::Default;
  double theta = 10000.0;               ///< rope_theta (LlamaConfig's default)
  double factor = 1.0;                  ///< linear, dynamic, yarn, llama3 (longrope: derived)
  double low_freq_factor = 1.0;         ///< llama3
  double high_freq_factor = 4.0;        ///< llama3
  int64_t original_max_positions = 0;   ///< llama3, yarn, longrope: the pretraining context
  int64_t max_positions = 0;            ///< config max_position_embeddings (dynamic's base length)
  double beta_fast = 32.0;              ///< yarn
  double beta_slow = 1.0;               ///< yarn
  bool truncate = true;                 ///< yarn: integer correction range
  std::optional<double> attention_factor;  ///< yarn, longrope: cos/sin scale (else derived)
  std::optional<double> mscale, mscale_all_dim;  ///< yarn (DeepSeek-style attention factor)
  std::vector<double> short_factor, long_factor;  ///< longrope: one per rotated pair
  /// The share of each head's channels that rotate (Phi-3 family; 1 elsewhere): the first
  /// rotary_dim(head_dim) channels, the rest pass through.
  double partial_rotary_factor = 1.0;

  /// int(head_dim · partial_rotary_factor), as transformers' _compute_*_parameters.
  int64_t rotary_dim(int64_t head_dim) const {
    return static_cast<int64_t>(static_cast<double>(head_dim) * partial_rotary_factor);
  }

  bool operator==(const RopeSpec& other) const;
};

}  // namespace calq::core
