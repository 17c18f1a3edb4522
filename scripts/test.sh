#!/usr/bin/env bash
# Set up a machine, build calq, run the whole test suite with ctest, then the sanitized subset,
# then compile and link the CUDA build (scripts/build_cuda.sh: nothing of it runs without a GPU;
# CALQ_SKIP_CUDA_BUILD=1 skips it, and a machine without nvcc says so and skips it).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"
"$root/scripts/build.sh"
cd "$root/build"
# calq sets this wait policy for itself (core/thread_wait_policy.h); the test binary gets it here.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}" OPENBLAS_THREAD_TIMEOUT="${OPENBLAS_THREAD_TIMEOUT:-4}"
ctest --output-on-failure -j "$(nproc)"
# Then the fast tests again under AddressSanitizer + UndefinedBehaviorSanitizer (build-asan/).
"$root/scripts/test_sanitized.sh"
if [[ "${CALQ_SKIP_CUDA_BUILD:-0}" == 1 ]]; then
  echo "test: CUDA build skipped (CALQ_SKIP_CUDA_BUILD=1)" >&2
elif ! command -v nvcc >/dev/null 2>&1 && [[ ! -x /usr/local/cuda/bin/nvcc ]]; then
  echo "test: CUDA build skipped: no nvcc on this machine" >&2
else
  "$root/scripts/build_cuda.sh"
fi
