// The run's CPU thread count: --threads capped at the cores this process may run on, set once
// for LibTorch's pool and OpenBLAS's before any work. More threads than cores only time-slice
// (and each of LibTorch's pool rebuilds starts them all): `--threads 100000` on 2 cores never
// finished an eval that takes 2 s with 2 threads (issue 18, class 7a).
#pragma once

namespace calq::cli {

/// Cores this process may run on: its sched_getaffinity mask (taskset, cgroup cpusets), else
/// std::thread::hardware_concurrency; at least 1.
int usable_cores();

/// `requested` threads (0 = the usable cores shared among `local_ranks` processes of one
/// group on this machine, at least one each), capped at usable_cores() with one warning.
int resolve_thread_count(int requested, int local_ranks = 1);

/// Sets LibTorch's intra-op and OpenBLAS's thread counts to `n`. Called once, from main.
void set_run_threads(int n);

}  // namespace calq::cli
