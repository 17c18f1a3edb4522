// Fake-quant QAT (docs/algorithms.md §9), the trained baseline PTQ is contrasted with: a short
// end-to-end fine-tune of every targeted linear's latent weight through the STE fake quantizer
// (and the scheme's activation quantization), LM cross-entropy on the calibration windows, Adam.
// It trains in prepare(), before the layer loop, and leaves the trained latent weights for the
// quantizing pass that follows (rtn), which then yields exactly the trained model. Memory is the
// whole model plus its activations for one minibatch: every layer is resident during training.
#pragma once

#include <memory>

#include "algorithms/pass.h"

namespace calq::core {
struct SchemeSection;
}

namespace calq::algorithms {

/// Options: steps (100), lr (1e-5), batch_windows (2), holdout_windows (8: the last calibration
/// windows, never trained on; their loss picks the step kept, step 0 = RTN included),
/// eval_every (10 steps between held-out measurements), seed (0).
std::unique_ptr<Pass> make_qat(const core::Options& options, const core::SchemeSection& scheme);

}  // namespace calq::algorithms
