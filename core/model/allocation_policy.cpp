#include "core/model/allocation_policy.h"

#include <mutex>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace calq::core {

void keep_freed_memory_in_process() {
  static std::once_flag once;
  std::call_once(once, [] {
#if defined(__GLIBC__)
    // M_MMAP_MAX 0: blocks above the mmap threshold (at most 32 MiB, e.g. [8, 512, 4096] fp32
    // logits) would otherwise be unmapped on free and re-faulted on the next forward.
    mallopt(M_MMAP_MAX, 0);
    // Never give the heap top back (default: whenever > 128 KiB, or 2x the adaptive threshold).
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif
  });
}

}  // namespace calq::core
