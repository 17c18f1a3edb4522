#!/usr/bin/env bash
# Issue #8's streaming check: GPTQ W4 g128 with `calq run --stream` on 7B-shaped synthetic Llamas
# (hidden 4096, intermediate 11008, 32 heads) of 2 and 8 layers, 8 calibration windows x 512
# tokens. Writes OUT/streaming_2L.json and OUT/streaming_8L.json (the runs' report.json) and
# prints the peak RSS of each and their ratio; bench/run.sh puts them into BENCHMARKS.md.
# Environment: CALQ (binary), OUT (default build/bench), SYNTH_DIR (models, default
# /tmp/calq-synth; generated when missing, 1.3 and 3.8 GB), LAYERS (default "2 8").
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
calq="${CALQ:-$root/build/calq}"
out="${OUT:-$root/build/bench}"
synth="${SYNTH_DIR:-/tmp/calq-synth}"
[[ -x "$calq" ]] || { echo "bench/streaming.sh: $calq not found; build first" >&2; exit 1; }
mkdir -p "$out" "$synth"
for n in ${LAYERS:-2 8}; do
  model="$synth/llama-7b-shape-${n}L"
  if [[ ! -d "$model" ]]; then
    "$calq" synth --hidden 4096 --intermediate 11008 --layers "$n" --heads 32 --vocab 32000 \
      --out "$model"
  fi
  rm -rf "$synth/gptq-${n}L" "$synth/run-${n}L"
  "$calq" -v run "$root/configs/synth_gptq_w4g128.yaml" --stream --set model.path="$model" \
    --set "save={format: gptq, path: $synth/gptq-${n}L}" --out "$synth/run-${n}L" \
    2> "$synth/run-${n}L.log"
  cp "$synth/run-${n}L/report.json" "$out/streaming_${n}L.json"
  python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(sys.argv[2], "layers: peak RSS", round(r["memory"]["peak_rss_mb"]), "MiB, estimate", round(r["memory"]["estimate"]["total_mb"]), "MiB, total", round(r["timing"]["total_s"]), "s")' \
    "$out/streaming_${n}L.json" "$n"
done
