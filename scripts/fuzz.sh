#!/usr/bin/env bash
# Runs one libFuzzer target for SECONDS: scripts/fuzz.sh TARGET SECONDS [libFuzzer flags...]
# (targets: tests/fuzz/fuzz_*.cpp; `scripts/fuzz.sh list` names them). Builds build-fuzz/ with
# clang (-DCALQ_FUZZ=ON) when needed, fuzzes a writable copy of tests/fuzz/corpus/TARGET so the
# checked-in seeds stay as they are, and keeps new inputs and crashes under build-fuzz/runs/TARGET.
# Prints executions, wall seconds and exec/s; exits nonzero on a crash, leak or sanitizer report.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${CALQ_FUZZ_BUILD_DIR:-$root/build-fuzz}"
targets=$(cd "$root/tests/fuzz" && ls fuzz_*.cpp | sed 's/\.cpp$//')
if [[ $# -lt 1 || "$1" == list ]]; then
  echo "usage: scripts/fuzz.sh TARGET SECONDS [libFuzzer flags...]; targets:" >&2
  echo "$targets" | sed 's/^/  /' >&2
  exit 2
fi
target="$1"
seconds="${2:?usage: scripts/fuzz.sh TARGET SECONDS}"
shift 2
grep -qx "$target" <<<"$targets" || { echo "fuzz.sh: no target $target; expected one of:" \
  $targets >&2; exit 2; }

cc="${CALQ_FUZZ_CC:-clang-14}" cxx="${CALQ_FUZZ_CXX:-clang++-14}"
generator=()
if command -v ninja >/dev/null 2>&1; then generator=(-G Ninja); fi
source "$root/scripts/libtorch.sh"
libtorch_reset_if_other "$build"
if [[ ! -f "$build/CMakeCache.txt" ]]; then
  CC="$cc" CXX="$cxx" cmake -S "$root" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    "${libtorch_cmake_args[@]}" -DCALQ_FUZZ=ON -DCALQ_BUILD_TESTS=OFF -DCALQ_PCH=OFF >/dev/null
fi
# CALQ_FUZZ_NO_BUILD=1 fuzzes the binary as last built (on a busy machine, when the sources
# changed only outside the parsers); CALQ_FUZZ_JOBS caps the build's parallelism.
if [[ "${CALQ_FUZZ_NO_BUILD:-0}" != 1 ]]; then
  cmake --build "$build" --target "$target" -j "${CALQ_FUZZ_JOBS:-$(nproc)}"
fi

run="$build/runs/$target"
mkdir -p "$run/corpus" "$run/artifacts"
cp -n "$root/tests/fuzz/corpus/$target/"* "$run/corpus/" 2>/dev/null || true
log="$run/last.log"
# LibTorch's and ICU's one-time allocations at start-up are reachable at exit, not leaks; LSan
# still reports any leak made while an input is parsed (libFuzzer's -detect_leaks).
export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
commit=$(git -C "$root" describe --always --dirty 2>/dev/null || echo ?)
# Per-target defaults (tests/fuzz/TARGET.flags: a dictionary, a larger -max_len for the parsers
# whose bugs need deep or long inputs); flags given on the command line come after and win.
defaults=()
if [[ -f "$root/tests/fuzz/$target.flags" ]]; then
  read -r -a defaults < <(sed "s|@DICT@|$root/tests/fuzz/dict|g" "$root/tests/fuzz/$target.flags")
fi
start=$(date +%s.%N)
set +e
"$build/tests/fuzz/$target" -max_total_time="$seconds" -print_final_stats=1 \
  -artifact_prefix="$run/artifacts/" "${defaults[@]}" "$@" "$run/corpus" >"$log" 2>&1
status=$?
set -e
end=$(date +%s.%N)
execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
wall=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.0f", b - a }')
rate=$(awk -v e="${execs:-0}" -v w="$wall" 'BEGIN { printf "%.0f", (w > 0 ? e / w : 0) }')
echo "$target: executions ${execs:-?}, wall ${wall} s, ${rate} exec/s, exit ${status} (log: $log)"
# What scripts/fuzz_report.sh tabulates (with last.log) into docs/fuzzing.md.
{
  echo "target=$target"
  echo "seconds=$seconds"
  echo "flags=${defaults[*]} $*"
  echo "started=$(date -u -d "@${start%.*}" +%Y-%m-%dT%H:%M:%SZ)"
  echo "wall_s=$wall"
  echo "executions=${execs:-0}"
  echo "exit=$status"
  echo "commit=$commit"
} >"$run/last.result"
if [[ $status -ne 0 ]]; then
  grep -E "ERROR|SUMMARY|runtime error|terminate|Test unit written" "$log" | head -20 >&2 || true
  echo "$target: FAILED; the input is under $run/artifacts/" >&2
fi
exit $status
