// Process-wide glibc malloc policy for calq's tensor workloads: every forward allocates the same
// large activations again, and returning them to the kernel between calls makes each reuse pay
// a page fault per 4 KiB (measured ~15 µs each in this project's VMs: a sotu-llama-6L layer at
// batch 8 took 0.28 s instead of 0.12 s). load_model applies it once; the CLI may call it first.
#pragma once

namespace calq::core {

/// Keeps freed heap memory in the process (no trimming of the heap top) for blocks under
/// 128 MiB; larger blocks are mapped and returned on free. Idempotent; a no-op without glibc.
void keep_freed_memory_in_process();

/// Returns the free pages inside the heap to the kernel (malloc_trim), keeping the address
/// space: for a layer-by-layer run, at each layer's end, so that heap fragments left by one
/// layer's temporaries do not stay resident. A no-op without glibc.
void give_back_free_heap_pages();

}  // namespace calq::core
