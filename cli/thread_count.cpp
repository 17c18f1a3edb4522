#include "cli/thread_count.h"

#include <algorithm>
#include <thread>

#include <ATen/Parallel.h>
#include <cblas.h>
#include <sched.h>

#include "core/log.h"

namespace calq::cli {

int usable_cores() {
  cpu_set_t mask;
  CPU_ZERO(&mask);
  if (::sched_getaffinity(0, sizeof mask, &mask) == 0) {
    const int count = CPU_COUNT(&mask);
    if (count > 0)
      return count;
  }
  return std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
}

int resolve_thread_count(int requested, int local_ranks) {
  const int cores = usable_cores();
  if (requested <= 0)
    return std::max(1, cores / std::max(1, local_ranks));
  if (requested > cores) {
    log::warn("--threads {}: this process may run on {} core{}; using {} threads", requested,
              cores, cores == 1 ? "" : "s", cores);
    return cores;
  }
  return requested;
}

void set_run_threads(int n) {
  // Debian's LibTorch starts with one intra-op thread; OpenBLAS with one per core. Each
  // at::set_num_threads rebuilds LibTorch's thread pool, so nothing else in calq calls it.
  at::set_num_threads(n);
  openblas_set_num_threads(n);
}

}  // namespace calq::cli
