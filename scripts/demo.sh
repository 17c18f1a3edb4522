#!/usr/bin/env bash
# calq's main job on a fresh machine: set up, build, then the default sweep on sotu-llama-6L
# (calibration on its training-side text, perplexity on its held-out text, protocol as in its
# configs but with 32 calibration windows and the first 40 evaluation windows so the whole job
# stays within minutes on 2 cores): FP32, RTN, GPTQ and AWQ at W4 g128 and W3 g128, naive W8A8
# and SmoothQuant W8A8. Beside each perplexity: the KL divergence to the float model on the same
# windows, top-1 agreement, and the built-in sotu last-word cloze accuracy (docs/tasks.md).
# Prints table.md; the plots are out/demo/ppl_vs_bits.png and kl_vs_bits.png (CALQ_DEMO_OUT moves
# the folder). Run again, it resumes: finished runs are skipped by their recipe hash.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
data="$root/data"   # the repository's own data (data/PROVENANCE.md)
begin=$(date +%s)
"$root/scripts/setup.sh"
CALQ_BUILD_TARGETS=calq "$root/scripts/build.sh"
out="${CALQ_DEMO_OUT:-$root/out/demo}"
start=$(date +%s)
# The runs: configs/sweeps/demo.yaml (the W3 cells are the W4 recipes with bits 3).
"${CALQ_BUILD_DIR:-$root/build}/calq" sweep "$root/configs/sweeps/demo.yaml" \
  --set calibration.nsamples=32 \
  --set "eval.perplexity=[{data: $data/sotu-llama-6L/sotu_valid.txt, seqlen: 512, max_windows: 40}]" \
  --set "eval.kl={base: float, top_k: 1024}" \
  --set "eval.tasks=[{task: $root/configs/tasks/sotu_cloze.yaml}]" \
  --out "$out"
echo "demo: setup + build $(( start - begin )) s, sweep $(( $(date +%s) - start )) s; table $out/table.md, plots $out/ppl_vs_bits.png $out/kl_vs_bits.png" >&2
