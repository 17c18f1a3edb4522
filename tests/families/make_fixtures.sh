#!/usr/bin/env bash
# ctest's `families.fixtures`: the transformers-built fixtures into OUT, with the venv's Python.
# Without the venv the fixtures are absent and the [families] tests skip, except under CI=true,
# where this fails (the comparison must run on every CI run).
set -euo pipefail
venv="$1" out="$2"
if [[ ! -x "$venv/bin/python" ]]; then
  msg="families: no Python test environment at $venv; expected scripts/setup.sh to have made it"
  case "${CI:-}" in ""|false|0) echo "$msg (the family tests will skip)" >&2; rm -f "$out/manifest.json"; exit 0 ;; esac
  echo "$msg" >&2
  exit 1
fi
rm -f "$out/calq_match.json" "$out/calq_refused.json"
exec "$venv/bin/python" "$(dirname "${BASH_SOURCE[0]}")/make_hf_fixtures.py" "$out"
