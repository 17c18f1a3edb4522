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
    // A fixed mmap threshold of 128 MiB (the default adapts up to 32 MiB): blocks below it, e.g.
    // [8, 512, 4096] fp32 logits, stay in the heap and are reused without page faults; blocks
    // above it (a 7B layer's [11008, 4096] weights, its [11008, 11008] Hessians) are mapped and
    // given back on free, so a layer-by-layer run does not keep every layer's large temporaries
    // as heap fragments (a 2-layer 7B-shaped GPTQ run peaked at 8.4 GB with no mmap at all).
    mallopt(M_MMAP_THRESHOLD, 128 << 20);
    // Never give the heap top back (default: whenever > 128 KiB, or 2x the adaptive threshold).
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif
  });
}

void give_back_free_heap_pages() {
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
}

}  // namespace calq::core
