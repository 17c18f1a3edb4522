// RTN: round-to-nearest of each targeted linear to the scheme's grid, no calibration (the
// baseline every table starts from; docs/algorithms.md §1). Also the minimal example of a pass.
#pragma once

#include <memory>

#include "algorithms/pass.h"

namespace calq::algorithms {

std::unique_ptr<Pass> make_rtn(const core::Options& options);

/// Shared by quantizing passes: stores `q` in the linear's state and writes its dequantized
/// weight (scales rounded to the storage dtype, as the exported checkpoint will hold) into the
/// layer, in the layer's dtype; the codes are kept compact (QuantizedTensor::compact). With
/// `keep_float_weight` (a later pass reads it: PassStep::later_reads_float_weight) the float
/// weight it replaces is kept in state.float_weight.
void install_quantized(core::DecoderLayer& layer, const std::string& linear,
                       core::QuantizedTensor q, LinearState& state, bool keep_float_weight);

/// The same for an FP/NF4 weight (scales rounded to `scale_dtype`, as for integer codes).
void install_fp_quantized(core::DecoderLayer& layer, const std::string& linear,
                          core::FpQuantized q, at::ScalarType scale_dtype, LinearState& state,
                          bool keep_float_weight);

/// Ŵ of an FP/NF4 weight with its scales rounded to `scale_dtype`: [out, in] float32.
at::Tensor dequantize_fp(const core::FpQuantized& q, at::ScalarType scale_dtype);

}  // namespace calq::algorithms
