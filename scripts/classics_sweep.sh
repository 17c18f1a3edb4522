#!/usr/bin/env bash
# The field's classics side by side on sotu-llama-6L (issue #7): LLM.int8, ZeroQuant with and
# without LKD, GPTQ + LoRC, FP8 W8A8, ZeroQuant-FP W4A8, mixed precision at 3.5 bits, QAT, with
# the RTN/GPTQ/naive-W8A8 rows they are compared to. Same reduced protocol as scripts/demo.sh
# (32 calibration windows, first 40 sotu_valid windows at 512) so it runs in minutes; drop the
# two --set lines for the configs' full protocol. Writes out/classics/{table.md,table.csv,
# ppl_vs_bits.png}. Assumes scripts/build.sh has run.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
data="${CALQ_SHARED:-$root/../shared}/data"
[[ -d "$data" ]] || { echo "classics_sweep: shared data not found at $data (set CALQ_SHARED)" >&2; exit 1; }
configs=(sotu_rtn_w4g128 sotu_rtn_w3g128 sotu_gptq_w4g128 sotu_gptq_w3g128 sotu_gptq_lorc_w3g128
         sotu_mixed_3p5bit sotu_w8a8_naive sotu_llm_int8 sotu_fp8_w8a8 sotu_zeroquant_w8a8
         sotu_zeroquant_w4a8 sotu_zeroquant_lkd_w4a8 sotu_zeroquant_fp_w4a8 sotu_qat_w4g128)
recipes=()
for c in "${configs[@]}"; do recipes+=("$root/configs/$c.yaml"); done
"$root/build/calq" sweep "${recipes[@]}" \
  --set calibration.nsamples=32 \
  --set "eval.perplexity=[{data: $data/sotu-llama-6L/sotu_valid.txt, seqlen: 512, max_windows: 40}]" \
  --out "${CALQ_CLASSICS_OUT:-$root/out/classics}"
