// scheme.mixed_precision in a run (docs/algorithms.md §8): the allocation from float Hessian
// sensitivities becomes per-layer overrides of the recipe the passes see; report.json gets the
// choice, <out>/sensitivity.png the picture.
#pragma once

#include <cstdint>
#include <string>

#include <ATen/core/Tensor.h>

#include "calib/stats_cache.h"
#include "core/recipe.h"

namespace calq::core {
class Model;
}

namespace calq::run {

class RunReport;

/// `windows`: the calibration windows [nsamples, seqlen]. Returns the recipe with the
/// allocation as overrides.
core::Recipe allocate_mixed_precision(core::Model& model, const core::Recipe& recipe,
                                      const at::Tensor& windows, int64_t batch_size,
                                      const calib::CacheUse& cache, RunReport& report,
                                      const std::string& out_dir);

}  // namespace calq::run
