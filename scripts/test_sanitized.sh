#!/usr/bin/env bash
# AddressSanitizer + UndefinedBehaviorSanitizer over the fast tests (tests/CMakeLists.txt,
# calq_sanitized_tests: parsers, tokenizers, recipe, quantizer, packing, calibration windows).
# Builds build-asan/ with -DCALQ_SANITIZE=ON, only that binary and what it links (calq_core,
# calq_calib), and runs it. Extra arguments go to the Catch2 binary (a test name or [tag]).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${CALQ_ASAN_BUILD_DIR:-$root/build-asan}"
start=$(date +%s)
CALQ_BUILD_DIR="$build" CALQ_BUILD_TARGETS=calq_sanitized_tests "$root/scripts/build.sh" \
  -DCALQ_SANITIZE=ON
built=$(date +%s)
# Any report fails the run. Leaks are checked; the suppressions file lists what LibTorch keeps
# for the life of the process, each entry with its reason.
export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:strict_string_checks=1}"
export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$root/tests/sanitizers/lsan.supp:print_suppressions=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}" OPENBLAS_THREAD_TIMEOUT="${OPENBLAS_THREAD_TIMEOUT:-4}"
cd "$build"
"$build/tests/calq_sanitized_tests" "$@"
end=$(date +%s)
echo "sanitized tests passed: build $((built - start)) s, run $((end - built)) s"
