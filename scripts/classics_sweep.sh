#!/usr/bin/env bash
# The field's classics side by side (issue #7): LLM.int8, ZeroQuant with and without LKD,
# GPTQ + LoRC, FP8 W8A8, ZeroQuant-FP W4A8, mixed precision, QAT, with the RTN/GPTQ/naive-W8A8
# rows they are compared to, in one `calq sweep`. Assumes scripts/build.sh has run.
#
#   MODEL=sotu (default): sotu-llama-6L; MODEL=tiny: stories260K (its tiny_* twins); the runs
#   are configs/sweeps/classics_<model>.yaml.
#   PROTOCOL=reduced (default): scripts/demo.sh's protocol (sotu: 32 calibration windows, the
#     first 40 sotu_valid windows at 512), minutes on 2 cores. PROTOCOL=full: the configs' own
#     calibration protocol, perplexity on the first evaluation set of each config only (sotu:
#     all of sotu_valid; the WikiText-2 rows are left out to halve the evaluation time).
# Writes $CALQ_CLASSICS_OUT (default out/classics-<model>-<protocol>)/{table.md,table.csv,
# ppl_vs_bits.png}; a killed sweep resumes on the next call.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
data="$root/data"
model="${MODEL:-sotu}"
protocol="${PROTOCOL:-reduced}"
case "$model" in
  sotu) eval_text="$data/sotu-llama-6L/sotu_valid.txt"; seqlen=512 ;;
  tiny) eval_text="$data/stories260K/tinystories_valid_eval.txt"; seqlen=256 ;;
  *) echo "classics_sweep: MODEL=$model; expected sotu or tiny" >&2; exit 1 ;;
esac
case "$protocol" in
  reduced) sets=(--set calibration.nsamples=32
                 --set "eval.perplexity=[{data: $eval_text, seqlen: $seqlen, max_windows: 40}]") ;;
  full) sets=(--set "eval.perplexity=[{data: $eval_text, seqlen: $seqlen}]") ;;
  *) echo "classics_sweep: PROTOCOL=$protocol; expected reduced or full" >&2; exit 1 ;;
esac
# The runs: configs/sweeps/classics_<model>.yaml.
"$root/build/calq" sweep "$root/configs/sweeps/classics_$model.yaml" "${sets[@]}" \
  --out "${CALQ_CLASSICS_OUT:-$root/out/classics-$model-$protocol}"
