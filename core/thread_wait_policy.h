// How idle worker threads wait. calq's process holds two thread pools: LibTorch's OpenMP team
// (element-wise ops) and OpenBLAS's pthreads (GEMMs). By default both spin after their work
// (libgomp up to ~300k iterations, OpenBLAS sched_yield for ~2^28 cycles), so on a small machine
// each pool's idle workers steal the cores the other pool is computing on. Measured on the
// 2-core machine: the AWQ search of sotu-llama-6L (W4 g128, 32 windows) spent under a quarter of
// its CPU in sgemm and took 130 s; with passive waiting, 51 s. Results do not change: the work
// split is the same, only the idle threads sleep.
#pragma once

namespace calq::core {

/// Both libraries read their wait policy from the environment once, when they are loaded, so
/// a process that finds it unset sets OMP_WAIT_POLICY=PASSIVE and OPENBLAS_THREAD_TIMEOUT=4
/// (what the user set is kept) and re-executes itself (/proc/self/exe) with the same arguments.
/// Returns only when nothing needed changing or the re-exec failed (then the process runs with
/// the libraries' defaults). Call first thing in main, before any thread starts.
void ensure_passive_thread_waiting(char** argv);

}  // namespace calq::core
