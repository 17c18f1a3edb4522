// The weight side of the numerical guards (core/numeric_guard.h): a NaN or Inf in a linear's
// weight or bias is refused before any pass quantizes it, with the layer, the linear, the stage
// and the checkpoint tensor it came from.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace calq::core {
class DecoderLayer;
}

namespace calq::algorithms {

/// Every linear of the layer, as the checkpoint gave it (stage "weights as loaded"): called
/// once per layer before the first pass, so a corrupt tensor fails the run where it is, not as a
/// NaN Hessian of the next layer.
void require_finite_weights(core::DecoderLayer& layer, int64_t index);

/// One linear's weight where a quantizing pass takes it ("gptq input": after the transforms,
/// which divide by searched scales).
void require_finite_weight(core::DecoderLayer& layer, int64_t index, const std::string& linear,
                           std::string_view stage);

}  // namespace calq::algorithms
