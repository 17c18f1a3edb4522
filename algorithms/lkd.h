// ZeroQuant's layer-by-layer knowledge distillation (docs/algorithms.md §7.2): for each decoder
// layer, the float layer is the teacher and the same layer with STE-fake-quantized weights (and the
// scheme's activation quantization) the student; Adam minimises MSE(teacher(X), student(X)) over
// the student's latent weights, X the layer's inputs. A float-transforming pass: it leaves the
// trained latent weights in the layer for the quantizing pass that follows (rtn), which then
// yields exactly the trained student. One layer is resident at a time.
#pragma once

#include <memory>

#include "algorithms/pass.h"

namespace calq::core {
struct SchemeSection;
}

namespace calq::algorithms {

/// Options: steps (200), lr (1e-4), batch_windows (4), eval_windows (32; 0 = all), seed (0),
/// inputs: calibration (the runner's layer inputs) | random_tokens (uniform token ids propagated
/// through the float layers, the paper's data-free variant; random_windows 64, random_seqlen 256).
std::unique_ptr<Pass> make_lkd(const core::Options& options, const core::SchemeSection& scheme);

}  // namespace calq::algorithms
