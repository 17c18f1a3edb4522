// The weights of an HF model directory as float tensors under their HF names, whatever calq
// wrote: plain (and fake-quantized) checkpoints as stored, packed GPTQ / AWQ / compressed-tensors
// checkpoints (config.json quantization_config) with each quantized linear's <prefix>.weight
// dequantized from its codes (and its activation quantization declared). `calq eval`, `calq
// inspect` and the export re-read check all load through this.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "core/checkpoint/packed_layout.h"
#include "core/model/weight_source.h"
#include "core/quant/quantized_tensor.h"

namespace calq::core {

/// `path`: an HF model directory (or a .safetensors file beside config.json).
std::shared_ptr<WeightSource> open_checkpoint_weights(const std::string& path);

/// The packed layout config.json declares; nullopt for float checkpoints (or no config.json).
std::optional<PackedLayout> read_packed_layout(const std::string& model_dir);

/// The quantized linear at `prefix` of a packed checkpoint, as stored (codes, scales, zeros).
QuantizedTensor read_packed_linear(const std::string& model_dir, const std::string& prefix);

}  // namespace calq::core
