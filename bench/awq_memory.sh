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
runs=()
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
    runs+=("$name|$which|$recipe ${sets[*]}|$dir|$load0|$load1")
  done
done
printf '%s\n' "${runs[@]}" | python3 - "$root/bench/results/awq_memory.json" "$before_sha" "$after_sha" <<'PY'
import json, re, sys
path, before_sha, after_sha = sys.argv[1:4]
runs = {}
for line in sys.stdin.read().splitlines():
    name, which, recipe, d, load0, load1 = line.split("|")
    report = json.load(open(f"{d}/report.json"))
    t = open(f"{d}.time").read()
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", t).group(1)
    secs = 0.0
    for part in wall.split(":"):
        secs = secs * 60 + float(part)
    runs.setdefault(name, {"recipe": recipe})[which] = {
        "wall_seconds": secs,
        "max_rss_kib_time_v": int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1)),
        "report_memory": report.get("memory"),
        "report_timing": report.get("timing"),
        "perplexity": {p["dataset"]: p["ppl"] for p in report["eval"]["perplexity"]},
        "loadavg_before": load0, "loadavg_after": load1,
    }
for r in runs.values():
    if "before" in r and "after" in r:
        r["perplexity_bit_identical"] = r["before"]["perplexity"] == r["after"]["perplexity"]
        r["peak_rss_ratio_after_over_before"] = (r["after"]["max_rss_kib_time_v"] /
                                                 r["before"]["max_rss_kib_time_v"])
        r["wall_ratio_after_over_before"] = r["after"]["wall_seconds"] / r["before"]["wall_seconds"]
json.dump({"before_sha": before_sha, "after_sha": after_sha, "runs": runs}, open(path, "w"),
          indent=2)
print(json.dumps({k: {"bit_identical": v.get("perplexity_bit_identical"),
                      "rss_kib": [v[w]["max_rss_kib_time_v"] for w in ("before", "after")],
                      "wall_s": [v[w]["wall_seconds"] for w in ("before", "after")]}
                  for k, v in runs.items()}, indent=1))
PY
