// The calibration engine's layer loop (docs/architecture.md §2.3; IST-DASLab/gptq
// llama_sequential). For layer i: the handler names the linears to process in turn (true
// sequential: q,k,v → o → gate,up → down); for each subset the runner runs the layer over the
// calibration inputs X_i once, a batch of windows at a time, collecting exactly the statistics the
// handler asked for, then hands them over; finally X_{i+1} = layer_i(X_i) with the quantized layer
// (GPTQ) or the float layer as it was before processing (AWQ), as the handler says.
//
// Memory (issue 22): X_i lives in an ActivationStore (in memory or a scratch file,
// calibration.offload); X_{i+1} overwrites it batch by batch when it comes from the processed
// layer; only one batch's intermediate activations exist at a time; a statistics forward stops
// as soon as the last linear it observes has seen its input (the q,k,v step runs the input norm
// only); linears that read one input (q,k,v; gate,up) share one accumulator.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "calib/activation_store.h"
#include "calib/linear_stats.h"
#include "calib/stats_cache.h"

namespace calq::core {
class Model;
class DecoderLayer;
}  // namespace calq::core

namespace calq::calib {

/// One subset of one layer, ready to be transformed.
struct LayerStep {
  core::DecoderLayer& layer;
  core::Model& model;  ///< for make_context (sub-module forwards: AWQ's inspected modules)
  int64_t layer_index = 0;
  int64_t step_index = 0;  ///< position of this subset in the layer's schedule
  const std::vector<std::string>& linears;       ///< the subset
  std::map<std::string, LinearStats>& stats;     ///< collected for the subset's linears
  const ActivationStore& layer_inputs;           ///< X_i [nsamples, seqlen, hidden]
  /// Runs the layer (as it is now) on a slice of inputs: [b, seq, hidden] -> same.
  std::function<at::Tensor(const at::Tensor&)> forward;
};

class LayerHandler {
 public:
  virtual ~LayerHandler() = default;
  /// Called once per layer before anything runs (e.g. to snapshot float weights).
  virtual void begin_layer(core::DecoderLayer& layer, int64_t index) = 0;
  /// The subsets of linears to process, in order.
  virtual std::vector<std::vector<std::string>> schedule(core::DecoderLayer& layer) = 0;
  /// What to collect for the subset's linears (may be empty: no forward is run).
  virtual Requirements needs(core::DecoderLayer& layer, const std::vector<std::string>& subset) = 0;
  virtual void process(LayerStep& step) = 0;
  /// true: X_{i+1} from the processed layer (GPTQ); false: from the float layer (AWQ).
  virtual bool propagate_quantized() const = 0;
  virtual void end_layer(core::DecoderLayer& layer, int64_t index) = 0;
  /// Called when nothing reads the layer any more, before a release, with X_{i+1} (the next
  /// layer's inputs; a resumable run saves them with the layer).
  virtual void layer_done(core::DecoderLayer& /*layer*/, int64_t /*index*/,
                          const ActivationStore& /*next_inputs*/) {}
  /// For the calibration cache: a fingerprint of everything that changed the model before the
  /// statistics of (layer, step) are gathered — "" when nothing did (the float model on float
  /// inputs), nullopt when they must not be cached.
  virtual std::optional<std::string> cache_scope(int64_t /*layer*/, int64_t /*step*/) const {
    return std::nullopt;
  }
};

struct RunnerOptions {
  int64_t batch_size = 8;  ///< calibration windows per layer forward
  bool show_progress = true;
  bool release_layers = false;  ///< free each layer after processing (bounded memory)
  /// Mixture of experts: statistics of every expert over every token (calibration.moe:
  /// all_experts) instead of over the tokens routed to it; layer outputs are routed either way.
  bool observe_all_experts = false;
  CacheUse cache;               ///< statistics read from / written to disk when set
  /// A resumed run (`calq run --resume`): layers before first_layer are done, and
  /// first_inputs is X_first_layer as the interrupted run computed it.
  int64_t first_layer = 0;
  at::Tensor first_inputs;
  /// Where X_i is kept (calibration.offload); the budget counts every copy the handler needs
  /// (one when X_{i+1} comes from the processed layer, two when from the float one).
  OffloadPolicy offload;
  /// With several ranks (core/dist): each runs the forwards on its share of whole batches and
  /// the statistics are reduced across ranks. false: every rank runs every window (passes that
  /// read the layer inputs themselves: lkd).
  bool shard_windows = true;
};


class LayerwiseRunner {
 public:
  /// `windows`: [nsamples, seqlen] int64 calibration token ids.
  LayerwiseRunner(core::Model& model, at::Tensor windows, RunnerOptions options = {});
  void run(LayerHandler& handler);
  const ActivationPlacement& placement() const { return placement_; }
  const std::vector<LayerTiming>& timings() const { return timings_; }

 private:
  /// X_0: the embeddings of this rank's windows (or the resumed run's inputs), placed per the policy.
  ActivationStore initial_inputs(int64_t copies);
  /// layer(X) batch by batch into `out` (may be `inputs` itself: each batch is read before its
  /// result is written).
  void forward_layer(core::DecoderLayer& layer, const ActivationStore& inputs,
                     ActivationStore& out) const;
  /// The subset's statistics: batch by batch, a dense layer's forward stopped once every
  /// accumulator has seen its input.
  void collect(core::DecoderLayer& layer, const ActivationStore& inputs,
               std::map<std::string, LinearStatsAccumulator>& accumulators);

  /// The cache key of (layer, step)'s statistics, or nullopt when they are not cached.
  std::optional<std::string> cache_key(const LayerHandler& handler, int64_t layer, int64_t step,
                                       const std::vector<std::string>& subset,
                                       const Requirements& needs) const;

  core::Model& model_;
  at::Tensor windows_;
  int64_t share_begin_ = 0;  ///< this rank's windows: [share_begin_, share_end_)
  int64_t share_end_ = 0;
  uint64_t windows_hash_ = 0;
  RunnerOptions options_;
  ActivationPlacement placement_;
  std::vector<LayerTiming> timings_;
};

}  // namespace calq::calib
