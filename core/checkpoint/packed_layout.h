// What a quantized checkpoint declares in config.json's quantization_config, normalised across
// the three packed formats (docs/formats.md §2.7, §3.4, §4.2): the writer builds the JSON from it
// and the reader parses the JSON into it. One layout per checkpoint: every quantized linear
// shares it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "core/quant/activation_quant.h"
#include "core/recipe.h"

namespace calq::core {

struct PackedLayout {
  SaveFormat format = SaveFormat::Gptq;  ///< never Fake
  int bits = 4;
  int64_t group_size = -1;  ///< −1 = per channel (compressed-tensors: or per tensor)
  bool per_tensor = false;  ///< compressed-tensors strategy "tensor"
  bool sym = true;
  bool act_order = false;    ///< GPTQ desc_act / compressed-tensors actorder "group"
  bool gptq_v2 = false;      ///< GPTQ checkpoint_format "gptq_v2": zeros stored without the −1
  /// GPTQ layout only: false when the producer writes no g_idx (AutoRound's own format); the
  /// groups are then sequential and in_features comes from qweight.
  bool g_idx_stored = true;
  /// What config.json declared when it is not the format's own quant_method, for messages and
  /// `calq inspect`: e.g. "auto-round (packing_format auto_round:auto_gptq)". Empty for calq's.
  std::string declared;
  /// compressed-tensors with activations: int-quantized (int8 container), else pack-quantized.
  std::optional<ActQuantSpec> activations;
  /// Where the weight fields sit in config.json, for messages: "quantization_config" (GPTQ,
  /// AWQ) or "quantization_config.config_groups.group_0.weights" (compressed-tensors).
  std::string weights_key = "quantization_config";
  std::string ct_format() const;  ///< "pack-quantized" | "int-quantized" | "naive-quantized"
};

/// config.json["quantization_config"] for the layout (docs/formats.md §2.7, §3.4, §4.2).
nlohmann::json quantization_config_json(const PackedLayout& layout);

/// Parses a quantization_config; nullopt for formats that store float weights (none present).
/// Throws calq::Error naming `file` and the key for anything calq cannot read.
std::optional<PackedLayout> parse_quantization_config(const nlohmann::json& config,
                                                      const std::string& file);

}  // namespace calq::core
