// One quantized linear in a packed checkpoint format and back (docs/formats.md §2–§4): integer
// codes and zeros go straight from the QuantizedTensor into the packed words (never re-derived from
// floats, §7.1), and the reader returns a QuantizedTensor whose dequantize() is the weight the
// loaders compute. Unsigned grids (gptq_*, awq_asym) map to compressed-tensors' signed codes by
// subtracting 2^(b−1) from codes and zeros (§4.3).
#pragma once

#include <string>

#include "core/checkpoint/packed_layout.h"
#include "core/io/safetensors.h"
#include "core/quant/quantized_tensor.h"

namespace calq::core {

class WeightSource;

/// Why `q` cannot be stored under `layout` (empty when it can): bit width, grid, group size
/// not dividing in_features, zero points v1 GPTQ cannot hold, shapes the packing needs.
std::string unrepresentable_reason(const PackedLayout& layout, const QuantizedTensor& q);

/// Why an [out, in] linear cannot be packed under `layout` whatever its values (empty when it
/// can): the shape rules alone, so a run checks them before quantizing (cli/cmd_run.cpp).
std::string shape_reason(const PackedLayout& layout, int64_t in_features, int64_t out_features);

/// The layout a quantized tensor asks for in `format` (bits, group size, sym, act-order).
PackedLayout layout_for(SaveFormat format, const QuantizedTensor& q,
                        const std::optional<ActQuantSpec>& activations);

/// The tensors of `prefix` (no ".weight"): qweight/qzeros/scales/g_idx (GPTQ), qweight/qzeros/
/// scales (AWQ), weight_packed/weight_scale/[weight_zero_point]/weight_shape/[weight_g_idx]
/// (compressed-tensors pack-quantized) or weight/weight_scale/[weight_zero_point]
/// (int-quantized). Scales in q.scale_dtype. Requires unrepresentable_reason(...) to be empty.
NamedTensors pack_linear(const PackedLayout& layout, const std::string& prefix,
                         const QuantizedTensor& q);

/// Whether `source` holds a packed linear under `prefix` in this layout.
bool has_packed_linear(const PackedLayout& layout, const WeightSource& source,
                       const std::string& prefix);

/// Reads the packed linear back; errors name the source path and tensor.
QuantizedTensor unpack_linear(const PackedLayout& layout, const WeightSource& source,
                              const std::string& prefix);

}  // namespace calq::core
