#!/usr/bin/env bash
# `calq generate` end to end (issue 24, docs/generate.md):
#  (a) stories260K, empty prompt, greedy, 200 tokens: stdout is llama2.c test_all.py's expected
#      text (data/stories260K/llama2c_greedy_200.txt) plus the final newline; stderr has the
#      speeds and the peak resident set;
#  (b) sotu-llama-6L continues a prompt: stdout starts with the prompt and goes on; seeded
#      sampling gives the same text twice;
#  (c) an RTN W4 g128 export in the GPTQ format generates too;
#  (d) bad input: one line "calq: error: ...", exit 1.
# Usage: generate_test.sh CALQ_BINARY DATA_DIR
set -uo pipefail
calq="$1"
data="$2"
if [[ ! -d "$data/stories260K" || ! -d "$data/sotu-llama-6L" ]]; then
  echo "FAIL: test data missing: $data"; exit 1
fi
data="$(cd "$data" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failures=0
fail() { echo "FAIL $*"; failures=$((failures + 1)); }
stories=("$calq" generate --model "$data/stories260K/stories260K.bin"
         --tokenizer "$data/stories260K/tok512.bin")
sotu="$data/sotu-llama-6L"

# (a) llama2.c's reference, byte for byte.
"${stories[@]}" --prompt "" --max-new-tokens 200 > "$work/stories.out" 2> "$work/stories.err"
rc=$?
[[ $rc -eq 0 ]] || fail "stories260K: exit $rc: $(cat "$work/stories.err")"
{ sed '1,/^---$/d' "$data/stories260K/llama2c_greedy_200.txt"; printf '\n'; } > "$work/expected.out"
if cmp -s "$work/stories.out" "$work/expected.out"; then
  echo "ok   stories260K greedy 200 tokens equals llama2.c test_all.py"
else
  fail "stories260K output differs from llama2.c's: $(diff "$work/expected.out" "$work/stories.out" | head -5)"
fi
grep -Eq 'prefill 1 tokens .*tokens/s.*decode 199 tokens .*tokens/s.*200 new tokens, stop: max_new_tokens.*peak RSS [0-9]+ MiB' \
  "$work/stories.err" || fail "stories260K: no speed/memory line on stderr: $(cat "$work/stories.err")"

# (b) sotu: readable continuation, seeded sampling reproducible.
prompt="The state of our union"
"$calq" generate --model "$sotu" --prompt "$prompt" --max-new-tokens 40 > "$work/sotu.out" 2>/dev/null ||
  fail "sotu greedy: exit $?"
out="$(cat "$work/sotu.out")"
if [[ "$out" == "$prompt"* ]] && [[ ${#out} -gt $(( ${#prompt} + 40 )) ]]; then
  echo "ok   sotu greedy: $out"
else
  fail "sotu greedy output: '$out'"
fi
for k in 1 2; do
  "$calq" generate --model "$sotu" --prompt "$prompt" --max-new-tokens 30 --temperature 0.8 \
    --top-k 40 --top-p 0.95 --seed 3 > "$work/sample$k.out" 2>/dev/null || fail "sotu sampling: exit $?"
done
cmp -s "$work/sample1.out" "$work/sample2.out" && echo "ok   sotu seeded sampling: $(cat "$work/sample1.out")" ||
  fail "seeded sampling differs between two runs"

# (c) an exported checkpoint (RTN W4 g128, GPTQ format), no calibration or evaluation.
cat > "$work/rtn.yaml" <<YAML
model: {path: $sotu}
scheme:
  weights: {bits: 4, group_size: 128, sym: false, grid: gptq}
passes: [rtn]
save: {format: gptq, path: $work/sotu-rtn-gptq}
YAML
if "$calq" -q run "$work/rtn.yaml" --out "$work/rtn-run" > /dev/null 2> "$work/rtn.err"; then
  out="$("$calq" generate --model "$work/sotu-rtn-gptq" --prompt "$prompt" --max-new-tokens 30 2>/dev/null)"
  [[ "$out" == "$prompt"* && ${#out} -gt $(( ${#prompt} + 20 )) ]] &&
    echo "ok   exported GPTQ W4 checkpoint: $out" || fail "exported checkpoint output: '$out'"
else
  fail "RTN export: $(cat "$work/rtn.err")"
fi

# (d) bad input: one error line, exit 1.
expect() {  # expect NAME REGEX -- command...
  local name="$1" regex="$2"; shift 3
  local err rc
  err="$("$@" 2>&1 >/dev/null)"; rc=$?
  if [[ $rc -ne 1 ]] || [[ $(printf '%s\n' "$err" | grep -c .) -ne 1 ]] ||
     ! printf '%s' "$err" | grep -Eq "^calq: error: .*$regex"; then
    fail "$name: exit $rc, stderr: $err"; return
  fi
  echo "ok   $name: $err"
}
expect temperature-zero '--temperature 0' -- "${stories[@]}" --prompt "" --temperature 0
expect top-p-above-one '--top-p 1.5' -- "${stories[@]}" --prompt "" --top-p 1.5
expect greedy-and-sampling 'excludes' -- "${stories[@]}" --prompt "" --greedy --top-k 5
expect negative-top-k 'top-k' -- "${stories[@]}" --prompt "" --top-k -1
expect unknown-dtype '--dtype' -- "${stories[@]}" --prompt "" --dtype float8
expect missing-model 'no such file' -- "$calq" generate --model "$work/none" --prompt "x"
expect no-prompt 'prompt' -- "$calq" generate --model "$sotu"
long="$(printf 'once upon a time %.0s' $(seq 1 200))"
expect prompt-too-long "leave no room in the model's context of 512" -- "${stories[@]}" --prompt "$long"

if [[ $failures -gt 0 ]]; then
  echo "$failures failure(s)"; exit 1
fi
echo "all generate checks passed"
