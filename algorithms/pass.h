// The interface every algorithm implements (design.md "Passes"). A pass declares, per linear,
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

#include "calib/linear_stats.h"
#include "core/quant/quantized_tensor.h"
#include "core/quant/quantizer.h"

namespace calq::core {
class DecoderLayer;
class Options;
struct Recipe;
}  // namespace calq::core

namespace calq::calib {
struct LayerStep;
}

namespace calq::algorithms {

/// Figures a pass reports for one linear (report.json passes[].layers[].linears).
struct LinearReport {
  std::map<std::string, double> figures;     ///< proxy_loss, damp, seconds, ...
  std::map<std::string, std::string> notes;  ///< grid, short_last_group, ...
};

/// The quantization target of one linear, resolved from scheme + overrides.
struct LinearTarget {
  std::string name;      ///< uniform name, "attn.q"
  core::QuantSpec spec;  ///< bits, grid, granularity, group size, scale dtype
};

/// What the run knows about one linear of the current layer.
struct LinearState {
  std::optional<core::QuantizedTensor> quantized;  ///< set by the quantizing pass
  std::map<std::string, LinearReport> reports;     ///< per pass name
};

/// One pass's view of one subset of one layer.
struct PassStep {
  calib::LayerStep& step;                             ///< layer, stats, inputs, forward
  const std::vector<LinearTarget>& targets;           ///< the subset's targeted linears
  std::map<std::string, LinearState>& linears;        ///< state of the whole layer, by name
};

class Pass {
 public:
  virtual ~Pass() = default;
  virtual const char* name() const = 0;
  /// true for passes that produce integer codes (rtn, gptq); exactly one runs per linear.
  virtual bool quantizes() const = 0;
  virtual calib::StatRequest needs(const LinearTarget& target) const = 0;
  virtual void apply(PassStep& step) = 0;
  /// true: the next layer sees this layer's quantized output (GPTQ); false: its float output.
  virtual bool propagate_quantized() const { return true; }
  /// Called once after the last layer: give back scratch memory held across layers.
  virtual void finish() {}
};

}  // namespace calq::algorithms
