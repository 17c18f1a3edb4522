#!/usr/bin/env bash
# `calq eval` and `calq run` on bad input: each case must exit 1 with ONE stderr line "calq: error: ..." that
# names the offending file and the problem, and must not crash (no signal, no core dump).
# Usage: bad_input_test.sh CALQ_BINARY SHARED_DATA_DIR
set -uo pipefail
calq="$1"
data="$2"
if [[ ! -d "$data" ]]; then
  if [[ "${CI:-}" == "true" ]]; then echo "FAIL: shared data missing under CI: $data"; exit 1; fi
  echo "SKIPPED: shared data missing: $data"; exit 0
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failures=0
passed=0

# expect NAME REGEX -- command...
expect() {
  local name="$1" regex="$2"; shift 3
  local err rc
  err="$("$@" 2>&1 >/dev/null)"; rc=$?
  local lines
  lines=$(printf '%s' "$err" | grep -c '^calq: error:' || true)
  if [[ $rc -ne 1 ]]; then
    echo "FAIL $name: exit code $rc (expected 1); stderr: $err"; failures=$((failures + 1)); return
  fi
  if [[ $lines -ne 1 ]] || ! printf '%s' "$err" | grep -Eq "$regex"; then
    echo "FAIL $name: stderr does not match /$regex/: $err"; failures=$((failures + 1)); return
  fi
  echo "ok   $name: $(printf '%s' "$err" | grep '^calq: error:')"
  passed=$((passed + 1))
}

fixture="$data/hf-fixtures/llama"
sotu="$data/sotu-llama-6L"
text="$sotu/sotu_valid.txt"

# 1. truncated safetensors
mkdir -p "$work/truncated"
cp "$fixture/config.json" "$work/truncated/"
head -c 5000 "$fixture/model.safetensors" > "$work/truncated/model.safetensors"
expect truncated-safetensors 'model\.safetensors.*(exceed|truncat|beyond|short)' -- \
  "$calq" eval --model "$work/truncated" --tokenizer "$sotu/tokenizer.model" --data "$text"

# 2. header that lies about offsets: one F32 tensor of 4 elements claiming bytes 0..64 of 16.
mkdir -p "$work/lying"
cp "$fixture/config.json" "$work/lying/"
header='{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,64]}}'
header="$header$(printf '%*s' $(( (8 - ${#header} % 8) % 8 )) '')"
{
  printf "$(printf '\\x%02x' $(( ${#header} & 255 )) $(( (${#header} >> 8) & 255 )))"
  printf '\x00\x00\x00\x00\x00\x00'
  printf '%s' "$header"
  head -c 16 /dev/zero
} > "$work/lying/model.safetensors"
expect lying-offsets 'model\.safetensors.*"a"' -- \
  "$calq" eval --model "$work/lying" --tokenizer "$sotu/tokenizer.model" --data "$text"

# 3. config.json without hidden_size
mkdir -p "$work/nohidden"
grep -v '"hidden_size"' "$fixture/config.json" > "$work/nohidden/config.json"
cp "$fixture/model.safetensors" "$work/nohidden/"
expect missing-hidden-size 'config\.json.*hidden_size' -- \
  "$calq" eval --model "$work/nohidden" --tokenizer "$sotu/tokenizer.model" --data "$text"

# 4. tokenizer of the wrong vocabulary size (Llama-2's 32000 pieces for a 4096-row embedding)
expect wrong-vocab 'tokenizer\.model.*32000.*4096' -- \
  "$calq" eval --model "$sotu" --tokenizer "$data/llama2-tokenizer/tokenizer.model" --data "$text"

# 5. empty text file
: > "$work/empty.txt"
expect empty-text 'empty\.txt.*empty' -- \
  "$calq" eval --model "$sotu" --data "$work/empty.txt" --seqlen 512

# 6. text shorter than one window
printf 'Fellow citizens of the Senate.' > "$work/short.txt"
expect short-text 'short\.txt.*shorter than one window' -- \
  "$calq" eval --model "$sotu" --data "$work/short.txt" --seqlen 512

# `calq run` on bad recipes: one line naming the key path, exit 1, and no output directory.
stories="$(cd "$data" && pwd)/stories260K"
recipe() {  # recipe NAME BITS GROUP CALIB_TEXT [EXTRA_LINE]
  cat > "$work/$1.yaml" <<YAML
model: {path: $stories/stories260K.bin, tokenizer: $stories/tok512.bin}
calibration: {data: $4, nsamples: 128, seqlen: 256, seed: 0}
scheme:
  weights: {bits: $2, group_size: $3, sym: false}
passes:
  - gptq: {damp: 0.01}
${5:-}
YAML
}
expect_run() {  # expect_run NAME REGEX: runs $work/NAME.yaml, then checks nothing was written
  expect "$1" "$2" -- "$calq" run "$work/$1.yaml" --out "$work/out-$1"
  if [[ -e "$work/out-$1" ]]; then
    echo "FAIL $1: output directory was written"; failures=$((failures + 1))
  fi
}
calib="$stories/tinystories_valid_calib.txt"
recipe typo-key 4 32 "$calib" "evall: {perplexity: []}"
expect_run typo-key 'typo-key\.yaml.*evall.*did you mean.*eval'
recipe bits-5 5 32 "$calib"
expect_run bits-5 'bits-5\.yaml.*scheme\.weights\.bits.*5'
recipe group-0 4 0 "$calib"
expect_run group-0 'group-0\.yaml.*scheme\.weights\.group_size.*0'
head -c 20000 "$calib" > "$work/short_calib.txt"
recipe short-calib 4 32 "$work/short_calib.txt"
expect_run short-calib 'short_calib\.txt.*nsamples.*seqlen'
recipe wrong-type 4 32 "$calib"
sed -i 's/seed: 0/seed: zero/' "$work/wrong-type.yaml"
expect_run wrong-type 'wrong-type\.yaml.*calibration\.seed'

echo "$passed passed, $failures failed"
[[ $failures -eq 0 ]]
