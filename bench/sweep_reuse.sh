#!/usr/bin/env bash
# Issue #6's check of "calibrate once": a GPTQ bits x group-size sweep (4 cells) on sotu-llama-6L
# by `calq sweep` (calibration cache on) against the same four cells as independent `calq run`s.
# Full calibration protocol of configs/sotu_gptq_w4g128.yaml (128 x 512); perplexity on the first
# EVAL_WINDOWS sotu_valid windows (default 40) so calibration and quantization dominate. The four
# runs go first, then the sweep (one process), each timed by /usr/bin/time (wall, user, sys);
# the load average is recorded around both.
# Writes OUT/sweep_reuse.json (default build/bench) and prints the ratio.
# Environment: CALQ (binary, default build/calq), OUT, EVAL_WINDOWS.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
calq="${CALQ:-$root/build/calq}"
out="${OUT:-$root/build/bench}"
data="$root/data"
windows="${EVAL_WINDOWS:-40}"
[[ -x "$calq" ]] || { echo "bench/sweep_reuse.sh: $calq not found; build first" >&2; exit 1; }
[[ -d "$data/sotu-llama-6L" ]] || { echo "bench/sweep_reuse.sh: no $data/sotu-llama-6L" >&2; exit 1; }
work="$out/sweep_reuse"
rm -rf "$work"
mkdir -p "$work"
recipe="$root/configs/sotu_gptq_w4g128.yaml"
eval_set="eval.perplexity=[{data: $data/sotu-llama-6L/sotu_valid.txt, seqlen: 512, max_windows: $windows}]"
loadavg() { cut -d' ' -f1 /proc/loadavg; }
# Runs a command under /usr/bin/time; prints "wall user sys".
timed() {
  /usr/bin/time -f "%e %U %S" -o "$work/time.txt" "$@" >/dev/null 2>>"$work/log.txt"
  cat "$work/time.txt"
}
sum() { awk -v a="$1" -v b="$2" 'BEGIN{split(a,x," ");split(b,y," ");printf "%.2f %.2f %.2f", x[1]+y[1], x[2]+y[2], x[3]+y[3]}'; }

load_start=$(loadavg)
runs="0 0 0"
for bits in 4 3; do
  for group in 128 -1; do
    t=$(timed "$calq" run "$recipe" --set "$eval_set" --set scheme.weights.bits=$bits \
          --set scheme.weights.group_size=$group --out "$work/runs/w${bits}_g${group}")
    echo "bench: calq run W$bits g$group: wall/user/sys $t s" >&2
    runs=$(sum "$runs" "$t")
  done
done
load_mid=$(loadavg)
sweep=$(timed "$calq" sweep "$recipe" --set "$eval_set" --grid scheme.weights.bits=4,3 \
          --grid scheme.weights.group_size=128,-1 --out "$work/sweep")
echo "bench: calq sweep (4 cells + the float row): wall/user/sys $sweep s" >&2
load_end=$(loadavg)
reused=$(grep -o "reused [0-9]* of [0-9]* calibration steps" "$work/log.txt" | tr '\n' ';' || true)

# The sweep's cells must equal the independent runs' perplexities bit for bit.
same=$(python3 - "$work" <<'PY'
import json, sys, glob, os
w = sys.argv[1]
def ppl(p): return json.load(open(p))["eval"]["perplexity"][0]["ppl"]
ok = True
for d in sorted(glob.glob(f"{w}/runs/*")):
    b, g = os.path.basename(d)[1:].split("_g")
    m = glob.glob(f"{w}/sweep/runs/*bits-{b}*group_size-{g}/report.json")
    ok = ok and len(m) == 1 and ppl(m[0]) == ppl(f"{d}/report.json")
print("true" if ok else "false")
PY
)
read -r rw ru rs <<<"$runs"
read -r sw su ss <<<"$sweep"
cat > "$out/sweep_reuse.json" <<JSON
{
  "benchmark": "sweep_reuse",
  "recipe": "configs/sotu_gptq_w4g128.yaml",
  "cells": "bits 4,3 x group_size 128,-1",
  "eval_windows": $windows,
  "threads": $(nproc),
  "independent_runs": {"wall_s": $rw, "user_s": $ru, "sys_s": $rs},
  "sweep": {"wall_s": $sw, "user_s": $su, "sys_s": $ss},
  "wall_ratio": $(awk -v a="$sw" -v b="$rw" 'BEGIN{printf "%.3f", a/b}'),
  "cpu_ratio": $(awk -v a="$su" -v b="$ss" -v c="$ru" -v d="$rs" 'BEGIN{printf "%.3f", (a+b)/(c+d)}'),
  "sweep_log_reuse": "$reused",
  "same_perplexities": $same,
  "load_average": {"start": $load_start, "after_runs": $load_mid, "end": $load_end}
}
JSON
cat "$out/sweep_reuse.json"
