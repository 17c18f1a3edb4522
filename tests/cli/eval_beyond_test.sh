#!/usr/bin/env bash
# Evaluation beyond perplexity end to end (issue 24; docs/tasks.md):
#  (a) `calq eval --save-logits` writes a KL base; `calq eval --kl-base` of the same model gives
#      KL 0 and full top-1 agreement; --rolling and the checkpoint size print labelled lines;
#  (b) `calq run` with eval.kl (from the saved file, and from the float model) and eval.tasks:
#      report.json holds KL > 0, top-1 agreement < 1 and the task's accuracy; the two bases agree;
#  (c) `calq sweep` tables gain the KL / accuracy table and table_eval.csv;
#  (d) bad input: one line "calq: error: ...", exit 1.
# Usage: eval_beyond_test.sh CALQ_BINARY DATA_DIR SOURCE_DIR
set -uo pipefail
calq="$1"
data="$(cd "$2" && pwd)"
src="$(cd "$3" && pwd)"
sotu="$data/sotu-llama-6L"
[[ -d "$sotu" ]] || { echo "FAIL: test data missing: $sotu"; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failures=0
fail() { echo "FAIL $*"; failures=$((failures + 1)); }
text="$sotu/sotu_valid.txt"

# (a)
"$calq" eval --model "$sotu" --data "$text" --seqlen 256 --max-windows 3 --kl-top-k 64 \
  --save-logits "$work/base.safetensors" --rolling > "$work/a.out" 2> "$work/a.err" ||
  fail "save-logits: $(cat "$work/a.err")"
grep -q "ppl [0-9.]* (GPTQ-protocol token perplexity" "$work/a.out" || fail "no labelled token perplexity"
grep -q "lm-eval rolling .*word_perplexity [0-9.]* byte_perplexity [0-9.]* bits_per_byte" "$work/a.out" ||
  fail "no labelled rolling perplexity"
grep -q "checkpoint: .* MiB on disk, .* bits per parameter" "$work/a.err" || fail "no checkpoint size"
"$calq" -q eval --model "$sotu" --data "$text" --seqlen 256 --max-windows 3 \
  --kl-base "$work/base.safetensors" --json "$work/self.json" > /dev/null 2> "$work/self.err" ||
  fail "kl-base self: $(cat "$work/self.err")"
python3 - "$work/self.json" <<'PY' || fail "self KL is not 0"
import json, sys
k = json.load(open(sys.argv[1]))["perplexity"][0]["kl"]
assert abs(k["kl_mean"]) < 1e-6 and k["top1_agreement"] == 1.0 and k["top_k"] == 64, k
PY

# (b)
run() {  # run NAME KL-YAML
  "$calq" -q run "$src/configs/sotu_rtn_w4g128.yaml" --no-cache --out "$work/$1" \
    --set "eval.perplexity=[{data: $text, seqlen: 256, max_windows: 3}]" --set "eval.kl=$2" \
    --set "eval.tasks=[{task: $src/configs/tasks/sotu_cloze.yaml, limit: 20}]" \
    > /dev/null 2> "$work/$1.err" || fail "$1: $(cat "$work/$1.err")"
}
run file "{base: $work/base.safetensors}"
run float "{base: float, top_k: 64}"
python3 - "$work/file/report.json" "$work/float/report.json" <<'PY' || fail "run KL/tasks"
import json, sys
a, b = (json.load(open(p))["eval"] for p in sys.argv[1:])
assert 0 < a["kl"]["kl_mean"] < 1 and a["kl"]["top1_agreement"] < 1, a["kl"]
assert a["kl"]["kl_mean"] == b["kl"]["kl_mean"], (a["kl"], b["kl"])  # same base, two routes
t = a["tasks"][0]
assert t["task"] == "sotu_cloze" and t["documents"] == 20 and 0 <= t["metrics"]["acc"] <= 1, t
PY

# (c)
cat > "$work/sweep.yaml" <<YAML
sweep:
  - recipes: [$src/configs/sotu_rtn_w4g128.yaml]
    grid: {scheme.weights.bits: [4, 3]}
YAML
"$calq" -q sweep "$work/sweep.yaml" --set calibration.nsamples=4 \
  --set "eval.perplexity=[{data: $text, seqlen: 256, max_windows: 2}]" \
  --set "eval.kl={top_k: 64}" --out "$work/sweep" > "$work/sweep.out" 2> "$work/sweep.err" ||
  fail "sweep: $(cat "$work/sweep.err")"
grep -q "| KL mean | KL p99 | top-1 agree |" "$work/sweep/table.md" || fail "sweep table lacks KL"
[[ $(wc -l < "$work/sweep/table_eval.csv") -eq 4 ]] || fail "table_eval.csv: expected 3 rows"

# (d)
expect_error() {  # expect_error NAME PATTERN -- COMMAND...
  local name="$1" pattern="$2"; shift 3
  local err; err="$("$@" 2>&1 >/dev/null)"; local rc=$?
  [[ $rc -eq 1 && $(printf '%s\n' "$err" | grep -c '^calq: error:') -eq 1 ]] &&
    printf '%s' "$err" | grep -Eq -- "$pattern" || fail "$name: rc $rc: $err"
}
expect_error no-data "--kl-base and --save-logits need --data" -- \
  "$calq" eval --model "$sotu" --kl-base "$work/base.safetensors" --task "$src/configs/tasks/sotu_cloze.yaml"
expect_error not-a-base "not a KL base" -- \
  "$calq" eval --model "$sotu" --data "$text" --seqlen 256 --max-windows 1 --kl-base "$sotu/expected.safetensors"
printf '{"text": [1]}\n' > "$work/bad.jsonl"
expect_error bad-doc "bad.jsonl: line 1: field \"text\" is a list" -- \
  "$calq" eval --model "$sotu" --task "$src/configs/tasks/sotu_cloze.yaml=$work/bad.jsonl"
expect_error kl-stream "eval.kl: the float model's distribution needs the whole float model" -- \
  "$calq" run "$src/configs/sotu_rtn_w4g128.yaml" --stream --out "$work/s" \
  --set "save={format: gptq, path: $work/s/ckpt}" --set "eval.kl={base: float}"

if [[ $failures -gt 0 ]]; then echo "$failures failure(s)"; exit 1; fi
echo PASS
