#!/usr/bin/env bash
# Configures and builds calq into build/ (Release). Extra arguments go to cmake's configure step;
# CALQ_BUILD_TARGETS (space-separated, default all) limits what is built: the demo needs only calq.
# LibTorch: the venv's PyTorch wheel unless CALQ_LIBTORCH says otherwise (scripts/libtorch.sh).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${CALQ_BUILD_DIR:-$root/build}"
source "$root/scripts/libtorch.sh"
libtorch_reset_if_other "$build"
generator=()
if command -v ninja >/dev/null 2>&1; then generator=(-G Ninja); fi
if [[ ! -f "$build/CMakeCache.txt" ]]; then
  cmake -S "$root" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
    "${libtorch_cmake_args[@]}" "$@" >/dev/null
else
  cmake -S "$root" -B "$build" "$@" >/dev/null
fi
targets=()
for t in ${CALQ_BUILD_TARGETS:-}; do targets+=(--target "$t"); done
cmake --build "$build" -j "$(nproc)" "${targets[@]}"
