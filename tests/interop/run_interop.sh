#!/usr/bin/env bash
# ctest's `interop.export_loaders`: the pytest suite of tests/interop with the venv's Python.
# Without the venv it skips, except under CI=true, where it fails (the certificate must run on
# every CI run); without a library the suite itself fails under CI (conftest.py).
# Usage: run_interop.sh VENV CALQ FIXTURES SHARED_DATA SOURCE_DIR OUT [pytest args...]
set -euo pipefail
venv="$1" calq="$2" fixtures="$3" data="$4" src="$5" out="$6"
shift 6
if [[ ! -x "$venv/bin/python" ]]; then
  msg="interop: no Python test environment at $venv; expected scripts/setup.sh to have made it"
  case "${CI:-}" in ""|false|0) echo "$msg (skipped)" >&2; exit 0 ;; esac
  echo "$msg" >&2
  exit 1
fi
mkdir -p "$out"
export CALQ_BIN="$calq" CALQ_FAMILY_FIXTURES="$fixtures" CALQ_DATA="$data" \
       CALQ_SOURCE_DIR="$src" CALQ_INTEROP_OUT="$out"
# calq's own wait policy (core/thread_wait_policy.h) for the exports; one torch thread per
# process: the exporter runs two calq processes beside the loading one on 2 cores.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}" OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
cd "$src/tests/interop"
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider -o console_output_style=classic \
  test_export_loaders.py "$@"
