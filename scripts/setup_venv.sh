#!/usr/bin/env bash
# Makes calq's Python test environment: $CALQ_VENV (default <repo>/.venv) from requirements.txt,
# pinned. The stamp (requirements.txt's sha256) is written last, so a second run is free and an
# interrupted or failed install, which has no stamp, is thrown away and made again next time.
# (A venv cannot be made elsewhere and renamed: its scripts name their own folder.)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${CALQ_VENV:-$root/.venv}"
req="$root/requirements.txt"
want="$(sha256sum "$req" | cut -d' ' -f1)"
stamp="$venv/.calq-requirements.sha256"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$venv/bin/python" ]]; then
  exit 0
fi
echo "setup: making the Python test environment $venv from requirements.txt" >&2
rm -rf "$venv"
python3 -m venv "$venv"
# This machine kind's pip config names an extra local index that may be absent: drop that chatter.
"$venv/bin/pip" install -q --disable-pip-version-check -r "$req" 2> >(grep -v "is ignored: it is neither" >&2)
"$venv/bin/python" -c "import torch, transformers, safetensors, sentencepiece, tokenizers" || {
  echo "setup: $venv does not import torch/transformers/safetensors/sentencepiece/tokenizers; expected the packages of $req" >&2
  exit 1
}
echo "$want" > "$stamp"
echo "setup: Python test environment ready" >&2
