// Runs a recipe's passes over a model: builds the passes from the registry, checks that their
// order makes sense, and drives them layer by layer through the calibration engine (or straight
// over the weights when no pass needs calibration data, e.g. plain RTN).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "algorithms/pass.h"
#include "calib/activation_store.h"
#include "calib/stats_cache.h"

namespace calq::core {
class DecoderLayer;
class Model;
struct Recipe;
}  // namespace calq::core

namespace calq::calib {
struct CalibrationSet;
}

namespace calq::algorithms {

/// One routed expert of one MoE layer as calibration saw it (report.json "moe"): the tokens
/// its linears received and, when that was below calibration.min_expert_tokens, the policy
/// applied (docs/moe.md).
struct ExpertCoverage {
  int64_t layer = 0;
  int64_t expert = 0;
  int64_t tokens = 0;
  std::string policy;  ///< "" (enough tokens), "damp", "identity" (damp, no token), "rtn"
  double damp = 0.0;   ///< the added fraction of mean(diag H) under "damp"
};

struct QuantizationResult {
  std::vector<std::string> pass_names;          ///< in the order they ran
  std::map<std::string, double> pass_seconds;   ///< wall time inside each pass's prepare + apply
  std::map<std::string, std::string> pass_summaries;  ///< Pass::summary_json(), where not empty
  std::vector<std::map<std::string, LinearState>> layers;  ///< per layer, by linear name
  std::vector<ExpertCoverage> experts;  ///< MoE layers' experts, in layer and expert order
  bool used_calibration = false;
  bool propagated_quantized = true;
  calib::ActivationPlacement activations;  ///< where the layer inputs were kept (calibration)
  std::vector<calib::LayerTiming> layer_timings;  ///< per calibrated layer
  double seconds = 0.0;
};

/// Builds the recipe's passes (an implicit trailing "rtn" when none quantizes) and rejects
/// invalid orders with the reason the passes' traits give (algorithms/pass_order.h).
std::vector<std::unique_ptr<Pass>> build_passes(const core::Recipe& recipe);

/// calibration.offload as the layer loop takes it: auto keeps the activations in memory while
/// they fit calibration.max_memory_gb and half of what the machine has free now.
calib::OffloadPolicy offload_policy(const core::CalibrationSection& calibration);

/// True when the next layer's inputs come from the processed layer (any pass says so).
bool propagates_quantized(const std::vector<std::unique_ptr<Pass>>& passes);

/// Every pass's check_model: one clear error before calibration starts.
void check_passes(const std::vector<std::unique_ptr<Pass>>& passes, const core::Model& model);

/// True when any pass needs statistics for any targeted linear, or activations are static.
bool needs_calibration(const std::vector<std::unique_ptr<Pass>>& passes,
                       const core::Model& model, const core::Recipe& recipe);

/// The run's integer tensors per layer and linear, as core::export_checkpoint takes them.
std::vector<std::map<std::string, core::QuantizedTensor>> quantized_linears(
    const QuantizationResult& result);

/// Streaming (`calq run --stream`): called once per layer when the layer is final, with its
/// states; the layer is released right after, and the states' integer tensors dropped.
using LayerSink = std::function<void(int64_t index, core::DecoderLayer& layer,
                                     std::map<std::string, LinearState>& states)>;

class LayerCheckpoints;

/// Quantizes `model` in place. `calibration` may be null when needs_calibration() is false.
/// With `cache.cache` set, statistics are read from / stored in the calibration cache. With
/// `checkpoints`, every finished layer is saved there, and the layers it already holds are
/// restored instead of recomputed (a resumed run continues after the last complete one).
QuantizationResult quantize_model(core::Model& model, const core::Recipe& recipe,
                                  std::vector<std::unique_ptr<Pass>>& passes,
                                  const calib::CalibrationSet* calibration,
                                  int64_t batch_size = 8, calib::CacheUse cache = {},
                                  const LayerSink& sink = {},
                                  LayerCheckpoints* checkpoints = nullptr);

}  // namespace calq::algorithms
