// Where a non-finite perplexity comes from: the failing window is run again stage by stage
// (embedding, each linear's input and output, each layer's output, the head) and the first stage
// whose output holds a NaN or an Inf is named, with the tensor to look at. Weights are checked
// as they load (decoder_model.cpp), so this is the backstop for what they cannot see: activations
// that overflow, an embedding row of a token the text uses, fake-quantized scales gone to Inf.
// Used by evaluate_perplexity.
#pragma once

#include <cstdint>
#include <string>

#include <ATen/core/Tensor.h>

namespace calq::core {

class Model;

/// `ids` [1, seq] int64: the window numbered `window` whose NLL was non-finite. Returns one
/// sentence, e.g. "model.layers.3.mlp.down_proj output is non-finite (first at window 0);
/// expected finite activations — its weight model.layers.3.mlp.down_proj.weight and its input
/// are finite: the product overflows float32".
std::string describe_non_finite_stage(Model& model, const at::Tensor& ids, int64_t window);

}  // namespace calq::core
