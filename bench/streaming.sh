#!/usr/bin/env bash
# Streaming checks (issues #8, #19): GPTQ W4 g128 with `calq run --stream` on `calq synth` models
# of one released model's width and a few layers, each run's peak RSS recorded; flat in depth
# means the run holds one layer at a time. SHAPE picks the model (table below):
#   llama-7b   hidden 4096, intermediate 11008, 32 heads, vocab 32000; 2 and 8 layers; 8 x 512
#              calibration (configs/synth_gptq_w4g128.yaml as is). Writes OUT/streaming_2L.json
#              and OUT/streaming_8L.json (the runs' report.json); bench/run.sh puts them into
#              BENCHMARKS.md.
#   llama3-8b  `calq synth --preset llama3-8b` (hidden 4096, intermediate 14336, 32 heads, 8 kv
#              heads, vocab 128256); 2 and 4 layers; 4 x 256 calibration (a memory check: the
#              Hessians and weights, not the windows, set the peak). Writes
#              OUT/streaming_llama3-8b_{2,4}L.json and the summary bench/results/streaming_llama3-8b.json,
#              from which bench/streaming_report.py writes BENCHMARKS.md's rows.
#   llama3-8b-paper  the llama3-8b model at the GPTQ paper's calibration protocol (issue #22):
#              128 x 2048 windows of WikiText-2 test, bfloat16 compute (model.dtype; how 8B
#              checkpoints are stored; statistics in float32), calibration.offload auto, 2 and 4
#              layers. report.json's timing.layers gives each layer's statistics / passes / next
#              inputs seconds; writes OUT/streaming_llama3-8b-paper_{2,4}L.json and the summary.
#   llama3-8b-awq-paper  the llama3-8b model, AWQ W4 g128 (configs/synth_awq_w4g128.yaml) at AWQ's
#              protocol, 128 x 512, bfloat16 compute; 2 and 4 layers; same outputs under its name.
#   mixtral-8x7b `calq synth --preset mixtral-8x7b` (hidden 4096, 8 experts of 14336, top 2, 32
#              heads, 8 kv heads, vocab 32000); 2 and 4 layers; 4 x 256 calibration, routed (each
#              expert's Hessian from its own tokens); the same outputs as llama3-8b under its name.
# Every model is float16 on disk, float32 compute. Each run also goes under /usr/bin/time -v, whose
# maximum resident set size must agree with calq's own getrusage figure.
# Environment: CALQ (binary), OUT (default build/bench), SYNTH_DIR (models, default
# /tmp/calq-synth; generated when missing: 1.3 / 3.8 GB for llama-7b 2 / 8 layers, 3.0 / 3.9 GB
# for llama3-8b 2 / 4), SHAPE (default llama-7b), LAYERS (default per shape).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
calq="${CALQ:-$root/build/calq}"
out="${OUT:-$root/build/bench}"
synth="${SYNTH_DIR:-/tmp/calq-synth}"
shape="${SHAPE:-llama-7b}"
[[ -x "$calq" ]] || { echo "bench/streaming.sh: $calq not found; build first" >&2; exit 1; }

# One row per shape: synth flags | default layers | calibration overrides | JSON name prefix.
calib=()
recipe="$root/configs/synth_gptq_w4g128.yaml"
case "$shape" in
  llama-7b) flags="--hidden 4096 --intermediate 11008 --heads 32 --vocab 32000"; layers="2 8"; tag="" ;;
  llama3-8b) flags="--preset llama3-8b"; layers="2 4"; tag="llama3-8b_"
             calib=(--set calibration.nsamples=4 --set calibration.seqlen=256) ;;
  llama3-8b-paper) flags="--preset llama3-8b"; layers="2 4"; tag="llama3-8b-paper_"
             calib=(--set calibration.nsamples=128 --set calibration.seqlen=2048
                    --set "calibration.data=$root/data/wikitext-2/wiki.test.raw"
                    --set model.dtype=bfloat16) ;;
  llama3-8b-awq-paper) flags="--preset llama3-8b"; layers="2 4"; tag="llama3-8b-awq-paper_"
             recipe="$root/configs/synth_awq_w4g128.yaml"; calib=(--set model.dtype=bfloat16) ;;
  mixtral-8x7b) flags="--preset mixtral-8x7b"; layers="2 4"; tag="mixtral-8x7b_"
                calib=(--set calibration.nsamples=4 --set calibration.seqlen=256) ;;
  *) echo "bench/streaming.sh: SHAPE \"$shape\" is not a bench shape; expected llama-7b, llama3-8b, llama3-8b-paper, llama3-8b-awq-paper or mixtral-8x7b" >&2; exit 1 ;;
esac
layers="${LAYERS:-$layers}"
mkdir -p "$out" "$synth"
for n in $layers; do
  model="$synth/${shape}-shape-${n}L"
  [[ "$shape" == llama-7b ]] && model="$synth/llama-7b-shape-${n}L"
  [[ "$shape" == llama3-8b-*paper ]] && model="$synth/llama3-8b-shape-${n}L"
  if [[ ! -d "$model" ]]; then
    # shellcheck disable=SC2086  # flags is a list of words
    "$calq" synth $flags --layers "$n" --out "$model"
  fi
  rm -rf "$synth/gptq-${tag}${n}L" "$synth/run-${tag}${n}L"
  # The 1-minute load average once a minute while the run works (what else had the 2 cores).
  (while true; do cut -d' ' -f1 /proc/loadavg; sleep 60; done) > "$synth/load-${tag}${n}L.txt" &
  sampler=$!
  /usr/bin/time -v -o "$synth/time-${tag}${n}L.txt" \
    "$calq" -v run "$recipe" --stream --set model.path="$model" \
    "${calib[@]}" --set "save={format: gptq, path: $synth/gptq-${tag}${n}L}" \
    --out "$synth/run-${tag}${n}L" 2> "$synth/run-${tag}${n}L.log"
  kill "$sampler"
  cp "$synth/load-${tag}${n}L.txt" "$out/load_${tag}${n}L.txt"
  json="$out/streaming_${tag}${n}L.json"
  cp "$synth/run-${tag}${n}L/report.json" "$json"
  cp "$synth/time-${tag}${n}L.txt" "$out/time_${tag}${n}L.txt"
  python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(sys.argv[2], "layers: peak RSS", round(r["memory"]["peak_rss_mb"]), "MiB, estimate", round(r["memory"]["estimate"]["total_mb"]), "MiB, total", round(r["timing"]["total_s"]), "s")' \
    "$json" "$n"
done
if [[ -n "$tag" ]]; then
  # shellcheck disable=SC2086
  python3 "$root/bench/streaming_report.py" collect --shape "$shape" --recipe "${recipe#"$root"/}" --synth-flags "$flags" \
    --calibration="${calib[*]}" --dir "$out" --logs "$synth" --layers $layers \
    --json "$root/bench/results/streaming_${shape}.json" \
    --source-git "$(git -C "$root" describe --always --dirty 2>/dev/null || echo '?')"
  python3 "$root/bench/streaming_report.py" table --write "$root/BENCHMARKS.md" \
    "$root"/bench/results/streaming_*.json
fi
