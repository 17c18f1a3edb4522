// GPTQ pass (Frantar et al. 2022; docs/algorithms.md §3): per targeted linear, the Hessian of its
// inputs from the calibration engine and the column-wise error-compensating quantizer in
// gptq_kernel. Options (YAML passes[i].gptq): act_order, damp, block_size, static_groups,
// fit (ref | updated: pitfall §3.5-a).
#pragma once

#include <memory>

#include "algorithms/pass.h"

namespace calq::algorithms {

std::unique_ptr<Pass> make_gptq(const core::Options& options);

}  // namespace calq::algorithms
