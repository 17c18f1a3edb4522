// Per-layer state of a resumable run (`calq run --resume DIR`). After each layer is final the
// run saves, each file written to a temporary name and renamed:
//   layer-NNNNN.safetensors   the layer as it now is (linears with their extensions, each saved
//                             by kind name; norms), its LinearStates (codes, scales, reports),
//                             what every pass carries to the next layer, and the pass seconds;
//   inputs-NNNNN.safetensors  X_{N+1}, the next layer's calibration inputs (the previous one is
//                             removed once this one is in place).
// A layer counts as complete once its inputs file exists, so a kill at any instant leaves either
// the previous complete layer or this one. Replaying the saved layers and continuing from the
// saved inputs gives the tensors an uninterrupted run would have, bit for bit on CPU: the
// quantized weights are stored exactly (as codes when they dequantize to the same bits, else
// densely), and nothing is recomputed from rounded values.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "algorithms/pass.h"

namespace calq::core {
class DecoderLayer;
}

namespace calq::algorithms {

class LayerCheckpoints {
 public:
  /// `dir`: the state folder (created when missing). `fingerprint`: everything the saved state
  /// depends on (recipe hash, calibration windows, batch size, device, dtype); states saved under
  /// another fingerprint are refused with an error naming both.
  LayerCheckpoints(std::string dir, std::string fingerprint);

  const std::string& dir() const { return dir_; }

  /// The last layer whose state is complete (layer file and next inputs), -1 for none. Checks
  /// that layers 0..that one all have their layer file and the fingerprint matches.
  int64_t last_complete() const;

  /// Saves layer `index` as it is now, with `next_inputs` (undefined when the run has none: no
  /// calibration statistics were needed).
  void save(int64_t index, core::DecoderLayer& layer,
            const std::map<std::string, LinearState>& states,
            const std::vector<std::unique_ptr<Pass>>& passes,
            const std::map<std::string, double>& pass_seconds, const at::Tensor& next_inputs);

  /// Puts layer `index`'s saved tensors into `layer` (on the layer's device) and returns its
  /// states. With `passes` and `pass_seconds` set, also restores the pass carries and seconds
  /// saved with it (for the last complete layer).
  std::map<std::string, LinearState> restore(int64_t index, core::DecoderLayer& layer,
                                             std::vector<std::unique_ptr<Pass>>* passes,
                                             std::map<std::string, double>* pass_seconds) const;

  /// X_{index+1} as saved with layer `index` (CPU), undefined when the run saved none.
  at::Tensor next_inputs(int64_t index) const;

 private:
  std::string layer_path(int64_t index) const;
  std::string inputs_path(int64_t index) const;

  std::string dir_;
  std::string fingerprint_;
};

}  // namespace calq::algorithms
