#!/usr/bin/env bash
# AWQ memory and time before/after (issue 22 part 2): runs configs/sotu_awq_w4g128.yaml (and
# RECIPE2, default configs/sotu_awq_w4g128.yaml at bits=3) with the BEFORE binary (built from the
# base commit) and the AFTER binary (this tree's build/calq), each under /usr/bin/time -v, one
# after the other, and writes bench/results/awq_memory.json: per run the wall seconds, the maximum
# resident set size (time -v, and report.json memory), every perplexity, /proc/loadavg before and
# after, and whether each perplexity is bit-identical between the two binaries (JSON doubles
# compared exactly).
# Environment: BEFORE (binary, default /work/awq-before/calq), BEFORE_SHA (its commit, default
# read from $(dirname BEFORE)/SHA), AFTER (default build/calq), OUT (run folders, default
# build/bench/awq_memory), RECIPES (space-separated "recipe[@set,set]" list).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
before="${BEFORE:-/work/awq-before/calq}"
after="${AFTER:-$root/build/calq}"
before_sha="${BEFORE_SHA:-$(cat "$(dirname "$before")/SHA" 2>/dev/null || echo unknown)}"
after_sha="$(git -C "$root" rev-parse HEAD)$(git -C "$root" diff --quiet -- algorithms || echo -dirty)"
out="${OUT:-$root/build/bench/awq_memory}"
recipes="${RECIPES:-configs/sotu_awq_w4g128.yaml configs/sotu_awq_w4g128.yaml@scheme.weights.bits=3}"
for b in "$before" "$after"; do
  [[ -x "$b" ]] || { echo "bench/awq_memory.sh: $b not found; build first" >&2; exit 1; }
done
mkdir -p "$out" "$root/bench/results"
cd "$root"
runs="$out/runs.tsv"
: > "$runs"
for spec in $recipes; do
  recipe="${spec%%@*}"
  sets=()
  if [[ "$spec" == *@* ]]; then
    IFS=',' read -ra kv <<< "${spec#*@}"
    for s in "${kv[@]}"; do sets+=(--set "$s"); done
  fi
  name="$(basename "$recipe" .yaml)${spec#"$recipe"}"
  name="${name//[@=,.]/_}"
  for which in before after; do
    bin="$before"; [[ "$which" == after ]] && bin="$after"
    dir="$out/$name.$which"
    load0="$(cat /proc/loadavg)"
    /usr/bin/time -v -o "$dir.time" "$bin" run "$recipe" "${sets[@]}" --no-cache \
      --no-resume-state --out "$dir" --overwrite > "$dir.log" 2>&1
    load1="$(cat /proc/loadavg)"
    printf '%s|%s|%s|%s|%s|%s\n' "$name" "$which" "$recipe ${sets[*]}" "$dir" "$load0" "$load1" >> "$runs"
  done
done
python3 "$root/bench/awq_memory_summary.py" "$runs" "$root/bench/results/awq_memory.json" \
  "$before_sha" "$after_sha"
