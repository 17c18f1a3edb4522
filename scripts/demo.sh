#!/usr/bin/env bash
# calq's main job on a fresh machine: set up, build, then evaluate the default model
# (sotu-llama-6L, float32) on its held-out text and on WikiText-2 under the GPTQ protocol.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
shared="${CALQ_SHARED:-$root/../shared}"
data="$shared/data"
if [[ ! -d "$data" ]]; then
  echo "demo: shared data not found at $data (set CALQ_SHARED)" >&2
  exit 1
fi
"$root/scripts/setup.sh"
"$root/scripts/build.sh"
mkdir -p "$root/out/demo"
"$root/build/calq" eval \
  --model "$data/sotu-llama-6L" \
  --data "$data/sotu-llama-6L/sotu_valid.txt" \
  --data "$data/wikitext-2/test.joined.txt" \
  --seqlen 512 \
  --json "$root/out/demo/eval.json"
echo "demo: figures written to out/demo/eval.json" >&2
