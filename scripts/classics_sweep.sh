#!/usr/bin/env bash
# The field's classics side by side (issue #7): LLM.int8, ZeroQuant with and without LKD,
# GPTQ + LoRC, FP8 W8A8, ZeroQuant-FP W4A8, mixed precision, QAT, with the RTN/GPTQ/naive-W8A8
# rows they are compared to, in one `calq sweep`. Assumes scripts/build.sh has run.
#
#   MODEL=sotu (default): sotu-llama-6L; MODEL=tiny: stories260K (its tiny_* twins).
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
  sotu)
    names=(rtn_w4g128 rtn_w3g128 gptq_w4g128 gptq_w3g128 gptq_lorc_w3g128 mixed_3p5bit w8a8_naive
           llm_int8 fp8_w8a8 zeroquant_w8a8 zeroquant_w4a8 zeroquant_lkd_w4a8 zeroquant_fp_w4a8
           qat_w4g128)
    eval_text="$data/sotu-llama-6L/sotu_valid.txt"; seqlen=512 ;;
  tiny)
    names=(rtn_w4g32 rtn_w3g32 gptq_w4g32 gptq_w3g32 gptq_lorc_w3g32 mixed_4bit w8a8_naive
           llm_int8 fp8_w8a8 zeroquant_w8a8 zeroquant_w4a8 zeroquant_lkd_w4a8 zeroquant_fp_w4a8
           qat_w4g32)
    eval_text="$data/stories260K/tinystories_valid_eval.txt"; seqlen=256 ;;
  *) echo "classics_sweep: MODEL=$model; expected sotu or tiny" >&2; exit 1 ;;
esac
case "$protocol" in
  reduced) sets=(--set calibration.nsamples=32
                 --set "eval.perplexity=[{data: $eval_text, seqlen: $seqlen, max_windows: 40}]") ;;
  full) sets=(--set "eval.perplexity=[{data: $eval_text, seqlen: $seqlen}]") ;;
  *) echo "classics_sweep: PROTOCOL=$protocol; expected reduced or full" >&2; exit 1 ;;
esac
recipes=()
for n in "${names[@]}"; do recipes+=("$root/configs/${model}_$n.yaml"); done
"$root/build/calq" sweep "${recipes[@]}" "${sets[@]}" \
  --out "${CALQ_CLASSICS_OUT:-$root/out/classics-$model-$protocol}"
