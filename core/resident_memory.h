// The process's memory as the kernel counts it, for progress logs and reports, and what it may
// still take, for budget checks before large allocations (evaluation logits).
#pragma once

namespace calq::core {

double resident_mb();       ///< current resident set (VmRSS), MiB; 0 where unknown
double peak_resident_mb();  ///< peak resident set (ru_maxrss), MiB
/// Memory the process can still allocate without swapping, MiB: /proc/meminfo MemAvailable,
/// lowered to the cgroup v2 limit's headroom (memory.max − memory.current) and to the
/// address-space limit's (RLIMIT_AS − VmSize) when they are set; 0 where unknown.
double available_mb();

}  // namespace calq::core
