#!/usr/bin/env bash
# ctest's `families.synth_fixtures`: tiny `calq synth` models of every synth family with
# transformers' logits (make_synth_fixtures.py), in the venv's Python. Without the venv the
# fixtures are absent and the [synth] test skips, except under CI=true, where this fails.
# Usage: make_synth_fixtures.sh VENV CALQ OUT
set -euo pipefail
venv="$1" calq="$2" out="$3"
if [[ ! -x "$venv/bin/python" ]]; then
  msg="families: no Python test environment at $venv; expected scripts/setup.sh to have made it"
  case "${CI:-}" in ""|false|0) echo "$msg (the synth test will skip)" >&2; rm -f "$out/manifest.json"; exit 0 ;; esac
  echo "$msg" >&2
  exit 1
fi
rm -f "$out/calq_match.json"
exec "$venv/bin/python" "$(dirname "${BASH_SOURCE[0]}")/make_synth_fixtures.py" "$calq" "$out"
