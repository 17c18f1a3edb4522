// Whether this LibTorch can compute in a dtype on a device, asked before a model loads: Debian's
// LibTorch 1.13 has no float16 matrix multiply on the CPU, which otherwise surfaced as a raw
// "addmm_impl_cpu_ not implemented for 'Half'" after a whole calibration (issue 18, class 8d).
#pragma once

#include <string>

#include <c10/core/ScalarType.h>

namespace calq::core {

/// Throws "compute dtype D on DEVICE: ...; expected <the dtypes that work there>" when a small
/// linear and softmax in `dtype` fail on `device` (probed once per pair, in microseconds).
void check_compute_support(const std::string& device, c10::ScalarType dtype);

}  // namespace calq::core
