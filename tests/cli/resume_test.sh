#!/usr/bin/env bash
# `calq run --resume DIR` after a SIGKILL: the run is killed while it works on a given layer
# (watched through -v's per-step log lines, so the kill lands mid-layer, not at a save), resumed,
# and must give the report and checkpoint an uninterrupted run gives: every checkpoint file byte
# for byte, report.json equal once timings and peak memory are removed. Three kill points on a
# 6-layer GPTQ run, plus one on a --stream run (its shards are replayed from the saved layers).
# Usage: resume_test.sh CALQ_BINARY DATA_DIR
set -uo pipefail
calq="$1"
data="$2"
model="$data/sotu-llama-6L"
if [[ ! -d "$model" ]]; then
  echo "FAIL: test data missing: $model"; exit 1
fi
work="$(mktemp -d)"
pid=""
trap '[[ -n "$pid" ]] && kill -9 "$pid" 2>/dev/null; rm -rf "$work"' EXIT

cat > "$work/recipe.yaml" <<YAML
model: {path: $model, dtype: float32}
calibration: {data: $model/sotu_calib.txt, nsamples: 16, seqlen: 256, seed: 0}
scheme:
  weights: {bits: 4, group_size: 128, sym: false, grid: gptq}
passes:
  - gptq: {act_order: true, damp: 0.01, block_size: 128}
eval:
  perplexity:
    - {data: $model/sotu_valid.txt, seqlen: 256, max_windows: 8}
YAML

# The run's outcome without what legitimately differs between two runs: timings and memory.
# Every run works in $work/run (its paths are in the report and the recipe hash) and is then
# moved aside under its name.
strip_report() {
  python3 - "$1" <<'PY'
import json, sys
def strip(v):
    if isinstance(v, dict):
        return {k: strip(x) for k, x in v.items()
                if not (k in ("timing", "memory", "tokens_per_second") or k.endswith("seconds"))}
    if isinstance(v, list):
        return [strip(x) for x in v]
    return v
print(json.dumps(strip(json.load(open(sys.argv[1]))), indent=1, sort_keys=True))
PY
}

# same_run NAME: the resumed run NAME matches the uninterrupted one of its mode.
same_run() {
  local name="$1" ref="$2"
  strip_report "$work/$ref/report.json" > "$work/$ref.stripped"
  strip_report "$work/$name/report.json" > "$work/$name.stripped"
  if ! diff -u "$work/$ref.stripped" "$work/$name.stripped" > "$work/$name.diff"; then
    echo "FAIL: $name: report.json differs from the uninterrupted run:"; head -40 "$work/$name.diff"
    exit 1
  fi
  (cd "$work/$ref/ckpt" && find . -type f | sort | xargs sha256sum) > "$work/$ref.sums"
  (cd "$work/$name/ckpt" && find . -type f | sort | xargs sha256sum) > "$work/$name.sums"
  if ! diff -u "$work/$ref.sums" "$work/$name.sums"; then
    echo "FAIL: $name: checkpoint files differ from the uninterrupted run"; exit 1
  fi
  if [[ -e "$work/$name/resume" ]]; then echo "FAIL: $name: state left in $name/resume"; exit 1; fi
}

# killed_then_resumed NAME LAYER [flags]: start, SIGKILL once layer LAYER is being worked on,
# resume, compare with the reference run of the same flags.
killed_then_resumed() {
  local name="$1" layer="$2" ref="$3"
  shift 3
  "$calq" -v run "$work/recipe.yaml" --no-cache --set "save={format: gptq, path: $work/run/ckpt}" \
    --out "$work/run" "$@" 2> "$work/$name.stderr" > /dev/null &
  pid=$!
  for _ in $(seq 1 1200); do
    grep -q "layer $layer step 0: statistics collected" "$work/$name.stderr" && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  if ! kill -9 "$pid" 2>/dev/null; then
    echo "FAIL: $name: calq ended before the kill at layer $layer:"; tail -5 "$work/$name.stderr"
    exit 1
  fi
  wait "$pid" 2>/dev/null
  pid=""
  if [[ -e "$work/run/report.json" || -e "$work/run/ckpt" ]]; then
    echo "FAIL: $name: a killed run left a report or checkpoint"; exit 1
  fi
  local saved
  saved=$(ls "$work/run/resume" | grep -c '^layer-')
  "$calq" run --resume "$work/run" > /dev/null 2> "$work/$name.resume.stderr" \
    || { echo "FAIL: $name: resume failed:"; tail -5 "$work/$name.resume.stderr"; exit 1; }
  mv "$work/run" "$work/$name"
  if (( saved > 0 )) && ! grep -q "resuming: layers 0\.\.$((saved - 1)) restored" "$work/$name.resume.stderr"; then
    echo "FAIL: $name: $saved layers were saved, but the resume did not restore them:"
    cat "$work/$name.resume.stderr"; exit 1
  fi
  same_run "$name" "$ref"
  echo "ok: $name: killed while on layer $layer, $saved layers saved, resumed: identical"
}

for mode in plain stream; do
  flags=()
  [[ $mode == stream ]] && flags=(--stream)
  "$calq" -q run "$work/recipe.yaml" --no-cache --set "save={format: gptq, path: $work/run/ckpt}" \
    --out "$work/run" "${flags[@]}" > /dev/null 2>&1 || { echo "FAIL: uninterrupted $mode run"; exit 1; }
  # The state folder exists while a run works and goes once it completes.
  [[ -e "$work/run/resume" ]] && { echo "FAIL: a completed run left its state"; exit 1; }
  mv "$work/run" "$work/ref_$mode"
done

killed_then_resumed kill_l1 1 ref_plain
killed_then_resumed kill_l3 3 ref_plain
killed_then_resumed kill_l5 5 ref_plain
killed_then_resumed kill_stream_l2 2 ref_stream --stream

# Nothing to resume: a finished run, and a folder no run wrote.
if "$calq" run --resume "$work/ref_plain" 2> "$work/err" > /dev/null; then
  echo "FAIL: --resume of a finished run succeeded"; exit 1
fi
grep -q "finished" "$work/err" || { echo "FAIL: unclear message:"; cat "$work/err"; exit 1; }
if "$calq" run --resume "$work/nothing" 2> "$work/err" > /dev/null; then
  echo "FAIL: --resume of an empty folder succeeded"; exit 1
fi
grep -q "no resumable run" "$work/err" || { echo "FAIL: unclear message:"; cat "$work/err"; exit 1; }
echo "ok: --resume refuses finished and unknown runs"
