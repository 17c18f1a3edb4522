// The interface every algorithm implements (docs/architecture.md §5). A pass declares, per linear,
// which calibration statistics it needs; the pipeline gathers them once per subset of a layer and
// calls the passes in recipe order. A pass either transforms float weights (smoothquant, awq
// scaling) or quantizes them (rtn, gptq): the last kind writes a QuantizedTensor into the
// LinearState and replaces the layer's weight with its dequantized (fake-quant) form.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "algorithms/pass_traits.h"
#include "calib/linear_stats.h"
#include "core/quant/float_grids.h"
#include "core/quant/quantized_tensor.h"
#include "core/quant/quantizer.h"

namespace calq::core {
class DecoderLayer;
class Model;
class Options;
struct Recipe;
}  // namespace calq::core

namespace calq::calib {
struct CalibrationSet;
struct LayerStep;
}

namespace calq::algorithms {

/// Figures a pass reports for one linear (report.json passes[].layers[].linears).
struct LinearReport {
  std::map<std::string, double> figures;     ///< proxy_loss, damp, seconds, ...
  std::map<std::string, std::string> notes;  ///< grid, short_last_group, ...
  std::map<std::string, bool> flags;         ///< numerical guards passed: weights_finite, ...
};

/// The quantization target of one linear, resolved from scheme + overrides.
struct LinearTarget {
  std::string name;      ///< uniform name, "attn.q"
  core::QuantSpec spec;  ///< bits, grid, granularity, group size, scale dtype
  /// Set for scheme.weights.format fp8_*/fp4_e2m1/nf4: values on this grid with one scale per
  /// spec.group_size columns (spec.bits, scale dtype and group size still apply; grid and sym not).
  std::optional<core::FpFormat> fp;
  bool pow2_scales = false;  ///< scheme.weights.scale: pow2
};

/// What the run knows about one linear of the current layer.
struct LinearState {
  std::optional<core::QuantizedTensor> quantized;  ///< set by the quantizing pass (int formats)
  /// Set instead of `quantized` for the fp/nf formats: no packed format stores these.
  std::optional<core::FpQuantized> fp_quantized;
  /// The float weight the quantizing pass started from (after any transform), for passes that
  /// run after quantization (lorc); the pipeline drops it once the subset's passes are done.
  at::Tensor float_weight;
  std::map<std::string, LinearReport> reports;     ///< per pass name
};

/// One pass's view of one subset of one layer.
struct PassStep {
  calib::LayerStep& step;                             ///< layer, stats, inputs, forward
  const std::vector<LinearTarget>& targets;           ///< the subset's targeted linears
  std::map<std::string, LinearState>& linears;        ///< state of the whole layer, by name
  /// Set by the pipeline for the pass being applied: whether a later pass of the recipe reads
  /// the subset's Hessians as collected (one that asks for them, or any refinement such as
  /// lorc; else the pass may consume them: GPTQ works in place), and whether one reads the
  /// float weights a quantizer replaced (lorc).
  bool later_reads_hessian = true;
  bool later_reads_float_weight = true;
};

/// What a pass carries from one layer to the next (LKD: its summary rows, the random-token
/// inputs), saved with every layer so that `calq run --resume` continues where a run stopped.
struct PassCarry {
  std::string json;                           ///< "" for nothing
  std::map<std::string, at::Tensor> tensors;  ///< on the model's device when restored
};

class Pass {
 public:
  virtual ~Pass() = default;
  virtual const char* name() const = 0;
  /// Role, schedule, propagation, reads and allowed orders (algorithms/pass_traits.h). May
  /// depend on the pass's options (awq's propagate, lkd's random_tokens), never change after
  /// the factory returned.
  virtual const PassTraits& traits() const = 0;
  virtual calib::StatRequest needs(const LinearTarget& target) const = 0;
  virtual void apply(PassStep& step) = 0;
  /// Refuses (calq::Error naming the recipe key) what this model cannot do, before any work.
  virtual void check_model(const core::Model&) const {}
  /// Called once before the layer loop with the whole model (QAT trains it end to end there).
  /// `calibration` is non-null whenever traits().reads.calibration_windows is true.
  virtual void prepare(core::Model&, const calib::CalibrationSet*) {}
  /// A pass-level summary for report.json (passes[].summary) as JSON text; "" for none.
  virtual std::string summary_json() const { return {}; }
  /// Called once after the last layer: give back scratch memory held across layers.
  virtual void finish() {}
  /// State built up over the layers so far (after prepare(), which a resumed run repeats).
  virtual PassCarry carry() const { return {}; }
  virtual void restore(const PassCarry& /*carry*/) {}
};

}  // namespace calq::algorithms
