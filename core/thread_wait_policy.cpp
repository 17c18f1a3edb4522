#include "core/thread_wait_policy.h"

#include <cstdlib>

#include <unistd.h>

namespace calq::core {
namespace {

/// Sets `name` to `value` unless the environment already has it; true when it set it.
bool set_if_unset(const char* name, const char* value) {
  if (std::getenv(name) != nullptr)
    return false;
  return ::setenv(name, value, /*overwrite=*/0) == 0;
}

}  // namespace

void ensure_passive_thread_waiting(char** argv) {
  bool changed = set_if_unset("OMP_WAIT_POLICY", "PASSIVE");
  // 2^4 cycles of sched_yield before an OpenBLAS worker sleeps (the library's minimum).
  changed = set_if_unset("OPENBLAS_THREAD_TIMEOUT", "4") || changed;
  if (!changed)
    return;
  ::execv("/proc/self/exe", argv);  // returns only on failure: go on with the defaults
}

}  // namespace calq::core
