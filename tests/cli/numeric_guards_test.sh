#!/usr/bin/env bash
# Numerical guards end to end on stories260K (issue #9 acceptance):
#  (a) one NaN planted in layer 3's down projection: `calq run` exits 1 with one error line naming
#      the layer, the linear and the stage, and writes no output directory;
#  (b) a calibration text that repeats one short sentence (every window alike, H singular) with a
#      damp far below float32 rounding: GPTQ runs and report.json records the escalated damp;
#  (c) a calibration text of one repeated token: GPTQ runs, report.json holds damp,
#      damp_escalations and dead_columns for every linear.
# Usage: numeric_guards_test.sh CALQ_BINARY DATA_DIR
set -uo pipefail
calq="$1"
data="$2"
if [[ ! -d "$data/stories260K" ]]; then
  echo "FAIL: test data missing: $data"; exit 1
fi
stories="$(cd "$data/stories260K" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failures=0
fail() { echo "FAIL $*"; failures=$((failures + 1)); }

recipe() {  # recipe NAME MODEL CALIB_TEXT GPTQ_OPTIONS
  cat > "$work/$1.yaml" <<YAML
model: {path: $2, tokenizer: $stories/tok512.bin}
calibration: {data: $3, nsamples: 16, seqlen: 64, seed: 0}
scheme:
  weights: {bits: 4, group_size: 32, sym: false}
passes:
  - gptq: $4
YAML
}

# report.json figures of every gptq linear: "layer linear damp escalations dead".
figures() {
  tr -d ' \n' < "$1" | grep -o '"[a-z]*\.[a-z0-9]*":{[^{}]*"damp":[^{}]*}' |
    sed -E 's/^"([^"]*)".*"damp":([^,}]*).*"damp_escalations":([^,}]*).*"dead_columns":([^,}]*).*/\1 \2 \3 \4/'
}

# (a) NaN weight. llama2.c layout: 28-byte header, then float32 embed, rms_att, wq, wk, wv, wo,
# rms_ffn, w1 (all layers each), then w2 = down_proj [dim, hidden] per layer.
read -r dim hidden layers heads kv vocab _ < <(od -A n -t d4 -N 28 "$stories/stories260K.bin" | tr '\n' ' ')
kv_dim=$((dim * kv / heads))
w2=$((vocab * dim + layers * dim + layers * dim * dim + 2 * layers * kv_dim * dim +
      layers * dim * dim + layers * dim + layers * hidden * dim))
offset=$((28 + 4 * (w2 + 3 * dim * hidden + 5)))  # layer 3, element [0][5]
cp "$stories/stories260K.bin" "$work/nan.bin"
chmod u+w "$work/nan.bin"
printf '\x00\x00\xc0\x7f' | dd of="$work/nan.bin" bs=1 seek="$offset" conv=notrunc status=none
recipe nan "$work/nan.bin" "$stories/tinystories_valid_calib.txt" "{}"
err="$("$calq" run "$work/nan.yaml" --out "$work/out-nan" 2>&1 >/dev/null)"; rc=$?
line="$(printf '%s\n' "$err" | grep '^calq: error:')"
if [[ $rc -ne 1 ]]; then
  fail "nan-weight: exit code $rc (expected 1): $err"
elif [[ $(printf '%s\n' "$line" | wc -l) -ne 1 ]] ||
     ! grep -Eq 'layer 3 mlp\.down: weight has 1 non-finite \(NaN/Inf\) entry of 11008 \(stage: weights as loaded\).*model\.layers\.3\.mlp\.down_proj\.weight' <<< "$line"; then
  fail "nan-weight: stderr: $err"
elif [[ -e "$work/out-nan" ]]; then
  fail "nan-weight: output directory was written"
else
  echo "ok   nan-weight: $line"
fi

# (b) every window alike: default damp suffices; damp 1e-9 must escalate, and say so.
for i in $(seq 400); do printf 'Once upon a time there was a cat. '; done > "$work/one_sentence.txt"
recipe sentence "$stories/stories260K.bin" "$work/one_sentence.txt" "{damp: 1.0e-9}"
if ! "$calq" run "$work/sentence.yaml" --out "$work/out-sentence" >/dev/null 2>"$work/sentence.err"; then
  fail "rank-deficient: calq run failed: $(cat "$work/sentence.err")"
else
  escalated="$(figures "$work/out-sentence/report.json" | awk '$3 > 0' | wc -l)"
  total="$(figures "$work/out-sentence/report.json" | wc -l)"
  if [[ $total -ne 35 || $escalated -eq 0 ]]; then
    fail "rank-deficient: $escalated of $total linears escalated (expected > 0 of 35)"
  else
    echo "ok   rank-deficient: damp escalated on $escalated of $total linears, e.g." \
         "$(figures "$work/out-sentence/report.json" | awk '$3 > 0' | head -1)"
  fi
fi

# (c) one repeated token: handled (damp, escalations and dead channels in the report).
for i in $(seq 3000); do printf 'the '; done > "$work/one_token.txt"
recipe token "$stories/stories260K.bin" "$work/one_token.txt" "{}"
if ! "$calq" run "$work/token.yaml" --out "$work/out-token" >/dev/null 2>"$work/token.err"; then
  fail "one-token: calq run failed: $(cat "$work/token.err")"
else
  total="$(figures "$work/out-token/report.json" | wc -l)"
  if [[ $total -ne 35 ]]; then
    fail "one-token: $total linears report damp, damp_escalations and dead_columns (expected 35)"
  else
    echo "ok   one-token: $(figures "$work/out-token/report.json" | awk '{e += $3; d += $4} END {print e " escalations, " d " dead columns over " NR " linears"}')"
  fi
fi

[[ $failures -eq 0 ]]
