#include "core/numeric_guard.h"

#include <atomic>
#include <cmath>
#include <type_traits>

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include "core/error.h"

namespace calq::core {

int64_t count_non_finite(const at::Tensor& t) {
  if (!t.defined() || !at::isFloatingType(t.scalar_type()))
    return 0;
  if (!(t.device().is_cpu() && t.is_contiguous()))
    return at::logical_not(at::isfinite(t)).sum().item<int64_t>();
  std::atomic<int64_t> total{0};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, t.scalar_type(), "count_non_finite",
                                  [&] {
    // float64 is tested as itself: a finite 1e300 is not an overflow.
    using wide_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    const scalar_t* p = t.data_ptr<scalar_t>();
    at::parallel_for(0, t.numel(), int64_t{1} << 16, [&](int64_t begin, int64_t end) {
      int64_t bad = 0;
      for (int64_t i = begin; i < end; ++i)
        bad += !std::isfinite(static_cast<wide_t>(p[i])) ? 1 : 0;
      total += bad;
    });
  });
  return total;
}

void require_finite(const at::Tensor& t, const GuardSite& site, std::string_view what,
                    std::string_view hint) {
  const int64_t bad = count_non_finite(t);
  if (bad == 0)
    return;
  fail("layer {} {}: {} has {} non-finite (NaN/Inf) {} of {} (stage: {}); expected finite "
       "values; {}",
       site.layer, site.linear, what, bad, bad == 1 ? "entry" : "entries", t.numel(), site.stage,
       hint);
}

}  // namespace calq::core
