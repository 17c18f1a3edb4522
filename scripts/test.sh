#!/usr/bin/env bash
# Set up a machine, build calq, run the whole test suite with ctest, then the sanitized subset.
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
