#!/usr/bin/env bash
# Hostile input end to end (issue #18, docs/robustness.md): deep JSON in every JSON file calq
# reads, YAML alias bombs and deep YAML, output paths that would destroy a user's files, and
# save problems that must surface before any work. Every refusal is one "calq: error:" line,
# exit 1, bounded in length; every output-path case checks the user's bytes are still there.
# Usage: hostile_input_test.sh CALQ_BINARY DATA_DIR
set -uo pipefail
calq="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
data="$2"
if [[ ! -d "$data/stories260K" ]]; then
  echo "FAIL: test data missing: $data"; exit 1
fi
data="$(cd "$data" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1
failures=0
passed=0
fail() { echo "FAIL $*"; failures=$((failures + 1)); }

# expect NAME REGEX -- command...: exit 1, one error line matching REGEX, at most 600 bytes.
expect() {
  local name="$1" regex="$2"; shift 3
  local err rc
  err="$(timeout 120 "$@" 2>&1 >/dev/null)"; rc=$?
  local line
  line="$(printf '%s\n' "$err" | grep '^calq: error:')"
  if [[ $rc -ne 1 ]]; then
    fail "$name: exit code $rc (expected 1); stderr: ${err:0:600}"; return
  fi
  if [[ $(printf '%s\n' "$line" | grep -c '^calq: error:') -ne 1 ]] || ! printf '%s' "$line" | grep -Eq "$regex"; then
    fail "$name: stderr does not match /$regex/: ${err:0:600}"; return
  fi
  if [[ ${#line} -gt 600 ]]; then
    fail "$name: error line of ${#line} bytes (expected a bounded message)"; return
  fi
  echo "ok   $name: $line"
  passed=$((passed + 1))
}

# expect_ok NAME -- command...: exit 0.
expect_ok() {
  local name="$1"; shift 2
  local err rc
  err="$(timeout 300 "$@" 2>&1 >/dev/null)"; rc=$?
  if [[ $rc -ne 0 ]]; then fail "$name: exit code $rc (expected 0); stderr: ${err:0:600}"; return; fi
  echo "ok   $name"
  passed=$((passed + 1))
}

# same_bytes NAME FILE SHA: the user's file is unchanged.
same_bytes() {
  if [[ "$(sha256sum "$2" 2>/dev/null | cut -d' ' -f1)" != "$3" ]]; then
    fail "$1: $2 was changed or removed"
  else
    passed=$((passed + 1))
  fi
}

fixture="$data/hf-fixtures/llama"
sotu="$data/sotu-llama-6L"
stories="$data/stories260K"
text="$sotu/sotu_valid.txt"
levels=100000
deep="$(printf '%*s' $levels '' | tr ' ' '[')$(printf '%*s' $levels '' | tr ' ' ']')"

# ---- 1. Deep JSON, 100 000 levels, in each JSON file calq reads ----
safetensors_with_header() {  # FILE HEADER_FILE: an 8-byte little-endian length, the header, 4 data bytes
  python3 - "$1" "$2" <<'PY'
import struct, sys
header = open(sys.argv[2], "rb").read()
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<Q", len(header)) + header + b"\0" * 4)
PY
}
mkdir -p deep_header deep_index deep_config deep_tokenizer
cp "$fixture/config.json" deep_header/
printf '{"w":{"dtype":"F32","shape":%s,"data_offsets":[0,4]}}' "$deep" > deep_header.json
safetensors_with_header deep_header/model.safetensors deep_header.json
expect deep-safetensors-shape 'model\.safetensors.*nests deeper than 64' -- \
  "$calq" eval --model deep_header --tokenizer "$sotu/tokenizer.model" --data "$text"

cp "$fixture/config.json" deep_index/
printf '{"metadata":{},"weight_map":{"model.embed_tokens.weight":%s}}' "$deep" \
  > deep_index/model.safetensors.index.json
expect deep-index-weight-map 'index\.json.*nests deeper than 64' -- \
  "$calq" eval --model deep_index --tokenizer "$sotu/tokenizer.model" --data "$text"

cp "$fixture/model.safetensors" deep_config/
python3 - "$fixture/config.json" deep_config/config.json "$levels" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
n = int(sys.argv[3])
text = json.dumps(c).replace('"hidden_size": %d' % c["hidden_size"], '"hidden_size": ' + "[" * n + "]" * n)
open(sys.argv[2], "w").write(text)
PY
expect deep-config-hidden-size 'config\.json.*nests deeper than 64' -- \
  "$calq" eval --model deep_config --tokenizer "$sotu/tokenizer.model" --data "$text"

printf '{"model":{"type":"BPE","vocab":{"a":%s},"merges":[]}}' "$deep" > deep_tokenizer/tokenizer.json
expect deep-tokenizer-vocab 'tokenizer\.json.*nests deeper than 64' -- \
  "$calq" eval --model "$fixture" --tokenizer deep_tokenizer/tokenizer.json --data "$text"

# 50 000 levels used to give a 100 KB error line; now it is refused at depth 64 like the rest,
# and a wide (not deep) bad value is quoted in at most 80 characters.
wide="[$(printf '1,%.0s' $(seq 1 20000))1]"
mkdir -p wide_config
cp "$fixture/model.safetensors" wide_config/
python3 - "$fixture/config.json" wide_config/config.json "$wide" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
text = json.dumps(c).replace('"hidden_size": %d' % c["hidden_size"], '"hidden_size": ' + sys.argv[3])
open(sys.argv[2], "w").write(text)
PY
expect wide-config-value-quoted-briefly 'hidden_size.*\[1,1,1.*\.\.\.' -- \
  "$calq" eval --model wide_config --tokenizer "$sotu/tokenizer.model" --data "$text"

# ---- 2. YAML: an alias bomb (nine levels of nine aliases: 9^9 values) and deep nesting ----
{
  echo 'a0: &a0 [x, x, x, x, x, x, x, x, x]'
  for i in 1 2 3 4 5 6 7 8 9; do
    p=$((i - 1))
    echo "a$i: &a$i [*a$p, *a$p, *a$p, *a$p, *a$p, *a$p, *a$p, *a$p, *a$p]"
  done
  echo "model: {path: $stories/stories260K.bin}"
} > bomb.yaml
expect yaml-alias-bomb 'bomb\.yaml.*expands to more than 100000 values' -- "$calq" run bomb.yaml --out bomb_out
[[ ! -e bomb_out ]] || fail "yaml-alias-bomb: wrote bomb_out"
printf 'model: %s\n' "$(printf '%*s' 50000 '' | tr ' ' '[')" > deep.yaml
expect yaml-deep-nesting 'deep\.yaml.*nests deeper than' -- "$calq" run deep.yaml
printf 'model: %s%s\n' "$(printf '%*s' 40 '' | tr ' ' '[')" "$(printf '%*s' 40 '' | tr ' ' ']')" > deep40.yaml
expect yaml-nesting-beyond-32 'deep40\.yaml.*nests deeper than 32' -- "$calq" run deep40.yaml

# ---- 3. Output paths never destroy what calq did not write ----
cat > r.yaml <<YAML
model: {path: $stories/stories260K.bin, tokenizer: $stories/tok512.bin}
scheme:
  weights: {bits: 4, group_size: 32, sym: false}
passes:
  - rtn
eval:
  perplexity:
    - {data: $stories/tinystories_valid_eval.txt, seqlen: 64, max_windows: 1}
save: {format: fake, path: ckpt}
YAML
mkdir -p thesis/chapters && echo "four years of work" > thesis/thesis.txt && echo "ch1" > thesis/chapters/1.txt
thesis_sum="$(sha256sum thesis/thesis.txt | cut -d' ' -f1)"
chapter_sum="$(sha256sum thesis/chapters/1.txt | cut -d' ' -f1)"
expect save-into-user-directory 'save\.path.*thesis holds files calq did not write' -- \
  "$calq" run r.yaml --out o_a --set save.path=thesis
same_bytes save-into-user-directory thesis/thesis.txt "$thesis_sum"
same_bytes save-into-user-directory thesis/chapters/1.txt "$chapter_sum"
[[ ! -e o_a ]] || fail "save-into-user-directory: the refused run left o_a"
expect out-into-user-directory '\-\-out.*thesis holds files calq did not write' -- \
  "$calq" run r.yaml --out thesis
same_bytes out-into-user-directory thesis/thesis.txt "$thesis_sum"

echo "notes" > notes.txt
notes_sum="$(sha256sum notes.txt | cut -d' ' -f1)"
expect save-over-a-file 'notes\.txt exists and is not a directory' -- \
  "$calq" run r.yaml --out o_b --set save.path=notes.txt
same_bytes save-over-a-file notes.txt "$notes_sum"
expect out-is-a-file '\-\-out.*notes\.txt exists and is not a directory' -- "$calq" run r.yaml --out notes.txt
same_bytes out-is-a-file notes.txt "$notes_sum"
ln -s thesis link_to_thesis
expect save-is-a-symlink 'link_to_thesis is a symbolic link' -- \
  "$calq" run r.yaml --out o_c --set save.path=link_to_thesis
same_bytes save-is-a-symlink thesis/thesis.txt "$thesis_sum"

mkdir -p model_copy && cp "$fixture"/* model_copy/ && cp "$sotu/tokenizer.model" model_copy/
touch model_copy/.calq-output  # even a directory calq once wrote is refused while it is the input
model_sum="$(sha256sum model_copy/model.safetensors | cut -d' ' -f1)"
cat > own_input.yaml <<YAML
model: {path: model_copy}
scheme:
  weights: {bits: 4, group_size: 32, sym: false}
passes: [rtn]
save: {format: fake, path: model_copy}
YAML
expect save-over-the-input-model 'save\.path.*model_copy is model\.path' -- "$calq" run own_input.yaml --out o_d
same_bytes save-over-the-input-model model_copy/model.safetensors "$model_sum"
mkdir -p nest && cp -r model_copy nest/ && touch nest/.calq-output
expect save-above-the-input-model 'save\.path.*nest contains model\.path' -- \
  "$calq" run own_input.yaml --out o_e --set model.path=nest/model_copy --set save.path=nest
expect save-is-root 'save\.path.*file-system root' -- "$calq" run r.yaml --out o_f --set save.path=/
expect save-is-parent 'save\.path.*working directory or one above' -- "$calq" run r.yaml --out o_g --set save.path=..
expect save-equals-out 'save\.path.*also the run.s --out folder' -- "$calq" run r.yaml --out same --set save.path=same
[[ ! -e same ]] || fail "save-equals-out: the refused run left same/"

# A new directory, a trailing slash, then the same outputs again (calq's own: replaced).
expect_ok first-run -- "$calq" run r.yaml --out o_ok --set save.path=ckpt_slash/
[[ -f ckpt_slash/model.safetensors && -f ckpt_slash/.calq-output && -f o_ok/report.json ]] ||
  fail "first-run: expected ckpt_slash/model.safetensors, its marker and o_ok/report.json"
[[ -z "$(ls -A ckpt_slash | grep -v -e '^model.safetensors$' -e '^config.json$' -e '^tok512.bin$' -e '^.calq-output$' -e '^calq_certificate.json$')" ]] ||
  fail "first-run: unexpected files in ckpt_slash: $(ls -A ckpt_slash)"
expect_ok rerun-replaces-own-output -- "$calq" run r.yaml --out o_ok --set save.path=ckpt_slash
# --overwrite replaces a directory that is not calq's, but never a file.
mkdir -p scratch && echo old > scratch/old.txt
expect_ok overwrite-flag -- "$calq" run r.yaml --out o_h --set save.path=scratch --overwrite
[[ ! -e scratch/old.txt && -f scratch/.calq-output ]] || fail "overwrite-flag: scratch was not replaced"
expect overwrite-never-replaces-a-file 'notes\.txt exists and is not a directory' -- \
  "$calq" run r.yaml --out o_i --set save.path=notes.txt --overwrite
same_bytes overwrite-never-replaces-a-file notes.txt "$notes_sum"

# Two runs on one output: the second is refused while the first holds the lock.
flock -n .o_lock.calq-lock sleep 20 &
holder=$!
sleep 0.5
expect concurrent-runs 'being written by another calq process' -- "$calq" run r.yaml --out o_lock --set save.path=ck_lock
kill "$holder" 2>/dev/null; wait "$holder" 2>/dev/null
[[ ! -e o_lock ]] || fail "concurrent-runs: the refused run created o_lock"

# ---- 4. Save problems surface before any work (no "quantizing" line, no output left) ----
expect gptq-shape-before-work 'save\.format gptq.*172.*not a multiple' -- \
  "$calq" run r.yaml --out o_j --set save.path=gp --set save.format=gptq
err="$("$calq" run r.yaml --out o_j --set save.path=gp --set save.format=gptq 2>&1)"
if printf '%s' "$err" | grep -q 'quantiz'; then fail "gptq-shape-before-work: the run started: $err"; else passed=$((passed + 1)); fi
[[ ! -e o_j && ! -e gp ]] || fail "gptq-shape-before-work: left o_j or gp"
if [[ -d /sys && ! -w /sys/calq-hostile-test ]] && ! mkdir /sys/calq-hostile-test 2>/dev/null; then
  expect unwritable-parent-before-work 'save\.path: cannot create /sys/calq-hostile-test' -- \
    "$calq" run r.yaml --out o_k --set save.path=/sys/calq-hostile-test/ckpt
  [[ ! -e o_k ]] || fail "unwritable-parent-before-work: left o_k"
fi

# ---- Beyond the issue's list: a model path that is a symlink loop (was exit 2) ----
ln -s loop_b loop_a && ln -s loop_a loop_b
expect model-path-symlink-loop 'loop_a.*(symbolic links|unreadable)' -- \
  "$calq" eval --model loop_a --tokenizer "$sotu/tokenizer.model" --data "$text"

echo "hostile input: $passed checks passed, $failures failed"
[[ $failures -eq 0 ]]
