// Where a model's tensors come from, by their HF names: a safetensors checkpoint, or a llama2.c
// .bin file presented under HF names (llama2c.h). The family implementations read weights only
// through this, so one Llama implementation serves both. Tensors come back on the CPU in the
// stored dtype; callers convert.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "core/quant/activation_quant.h"

namespace calq::core {

class WeightSource {
 public:
  virtual ~WeightSource() = default;
  virtual const std::string& path() const = 0;  ///< the file or directory, for messages
  virtual bool contains(const std::string& name) const = 0;
  virtual std::vector<std::string> names() const = 0;  ///< sorted
  virtual std::vector<int64_t> shape(const std::string& name) const = 0;
  /// The stored dtype. Sources with a header answer without reading the data (checkpoint
  /// checks look at every packed tensor's dtype at open); the default loads the tensor.
  virtual c10::ScalarType dtype(const std::string& name) const { return load(name).scalar_type(); }
  /// CPU tensor owning its bytes, in the stored dtype; throws calq::Error naming the path.
  virtual at::Tensor load(const std::string& name) const = 0;
  /// The activation quantization a checkpoint declares for the linear at `prefix` (compressed-
  /// tensors W8A8: per-token dynamic); none for float checkpoints.
  virtual std::optional<ActQuantSpec> input_quant(const std::string& /*prefix*/) const {
    return std::nullopt;
  }
};

/// `path`: a directory holding model.safetensors[.index.json], or one .safetensors file.
std::shared_ptr<WeightSource> open_safetensors_source(const std::string& path);

/// Loads `name`, checks it has `shape` (error: "<path>: tensor "x" has shape [a, b]; expected
/// [c, d]") and converts it to `dtype` on `device`.
at::Tensor load_weight(const WeightSource& source,
                       const std::string& name,
                       const std::vector<int64_t>& shape,
                       c10::ScalarType dtype,
                       c10::Device device);

/// Parameters stored in the source: every tensor's numel except known non-parameter buffers
/// (GPT-2's attn.bias / attn.masked_bias masks, old Llama rotary_emb.inv_freq).
int64_t count_parameters(const WeightSource& source);

}  // namespace calq::core
