// What a pass declares about itself (docs/architecture.md §5, docs/howto-add-pass.md §1.2): its
// role, how the layer loop schedules it, which layer's outputs feed the next layer, what it reads
// beyond the statistics it asks for, and the orders, exports and run modes it allows.
// build_passes, the pipeline and calq run derive their checks and messages from these fields,
// so no code outside a pass tests a pass's name.
#pragma once

#include <string>
#include <vector>

namespace calq::algorithms {

/// Where a pass sits in a recipe: transforms and trainers first, one quantizer, refinements last.
enum class PassRole {
  Transform,     ///< float weights in, float weights out, layer by layer (smoothquant, awq, lkd)
  ModelTrainer,  ///< float weights in and out, the whole model trained in prepare() (qat)
  Quantizer,     ///< writes a linear's codes and its dequantized weight; one per linear (rtn, gptq)
  Refinement,    ///< changes a quantized linear after its quantizer (lorc)
};

/// How the layer loop cuts a layer into subsets for this pass.
enum class PassSchedule {
  TrueSequential,  ///< the family's sequential steps, each seeing the earlier steps quantized
  /// All linears in one subset, statistics of the layer before any of it changed. One such pass
  /// puts every pass of the recipe on this schedule (docs/architecture.md §5).
  WholeLayer,
};

/// Which outputs of layer i the run propagates as the inputs of layer i + 1.
enum class Propagation {
  Float,      ///< the float layer's, unless another pass of the recipe declares Quantized
  Quantized,  ///< the quantized layer's (GPTQ's sequential protocol)
};

/// What a pass reads besides the per-linear statistics it asks for in Pass::needs().
struct PassReads {
  /// The calibration windows, even where no linear's statistics are asked for (lkd, qat).
  bool calibration_windows = false;
  /// The float weight the quantizer replaced (lorc): the pipeline keeps it until this pass ran.
  bool quantizer_float_weight = false;
  /// The subset's statistics as collected, without asking (lorc's proxy losses): an earlier pass
  /// may not consume the Hessians in place.
  bool collected_hessians = false;
  /// Every calibration token's input of the linears it processes (stats.inputs: AWQ's search):
  /// memory that grows with the calibration tokens (run/memory_estimate.h).
  bool linear_inputs = false;
};

/// "This pass must run before `pass` when both are in a recipe", with the reason the refusal
/// gives.
struct MustPrecede {
  std::string pass;    ///< registry name of the other pass
  std::string reason;  ///< completes "runs after <pass>, which ..."
};

struct PassTraits {
  PassRole role = PassRole::Transform;
  PassSchedule schedule = PassSchedule::TrueSequential;
  Propagation propagation = Propagation::Float;
  PassReads reads;
  /// Works with scheme.weights.format fp8_*/fp4_e2m1/nf4 (transforms and rtn do; integer
  /// quantizers and searches do not).
  bool float_weight_formats = false;
  std::vector<MustPrecede> must_precede;
  /// A quantizer whose result no refinement may follow, and why (llm_int8); "" = any may.
  std::string refuses_refinement;
  /// Only save.format fake can hold what this pass leaves, and why (llm_int8); "" = every format.
  std::string fake_export_only;
  /// A quantizer that turns each target linear into its result from that linear's weight and
  /// statistics alone, leaving only the weight, its QuantizedTensor and its report (rtn, gptq):
  /// with several ranks each linear is quantized by one owner and broadcast
  /// (algorithms/owner_parallel.h).
  bool per_linear = false;
  /// `calq run --stream` cannot run this pass, and why (lorc); "" = it can.
  std::string not_streamable;
};

}  // namespace calq::algorithms
