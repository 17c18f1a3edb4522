#!/usr/bin/env bash
# `calq eval` and `calq run` on bad input: each case must exit 1 with ONE stderr line "calq: error: ..." that
# names the offending file and the problem, and must not crash (no signal, no core dump); the
# line holds no control bytes. Cases 7-8 are issue 18's classes 7 (unbounded resources) and 8
# (messages).
# Usage: bad_input_test.sh CALQ_BINARY DATA_DIR (the repository's data/)
set -uo pipefail
calq="$1"
data="$2"
if [[ ! -d "$data" ]]; then
  echo "FAIL: test data missing: $data"; exit 1
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
  if [[ $lines -ne 1 ]] || ! printf '%s' "$err" | grep -Eq -e "$regex"; then
    echo "FAIL $name: stderr does not match /$regex/: $err"; failures=$((failures + 1)); return
  fi
  if printf '%s' "$err" | LC_ALL=C grep -q '[[:cntrl:]]'; then
    echo "FAIL $name: stderr holds control bytes: $(printf '%s' "$err" | od -c | head -5)"
    failures=$((failures + 1)); return
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

# 4. tokenizer of the wrong vocabulary size (GPT-2's 50257 tokens for a 4096-row embedding)
expect wrong-vocab 'vocab\.json.*50257.*4096' -- \
  "$calq" eval --model "$sotu" --tokenizer "$data/gpt2-tokenizer" --data "$text" --seqlen 256

# 5. empty text file
: > "$work/empty.txt"
expect empty-text 'empty\.txt.*empty' -- \
  "$calq" eval --model "$sotu" --data "$work/empty.txt" --seqlen 512

# 6. text shorter than one window
printf 'Fellow citizens of the Senate.' > "$work/short.txt"
expect short-text 'short\.txt.*shorter than one window' -- \
  "$calq" eval --model "$sotu" --data "$work/short.txt" --seqlen 512

# Issue 18 class 6: non-finite weights and activations, and tensors of undeclared layers, on
# copies of the tiny HF Llama fixture (2 layers, vocab 512: stories260K's tok512.bin fits it).
tok512="$data/stories260K/tok512.bin"
tiny_text="$data/stories260K/tinystories_valid_eval.txt"
# tensor_offset FILE NAME: the byte offset of tensor NAME's data in safetensors FILE.
tensor_offset() {
  local n begin
  n=$(od -A n -t u8 -N 8 "$1" | tr -d ' ')
  begin=$(head -c $((8 + n)) "$1" | tail -c "$n" | grep -o "\"$2\":{[^}]*}" |
          grep -o '"data_offsets":\[[0-9]*' | grep -o '[0-9]*$')
  echo $((8 + n + begin))
}
fixture_copy() {  # fixture_copy NAME: a writable copy of the fixture at $work/NAME
  mkdir -p "$work/$1"
  cp "$fixture/config.json" "$fixture/model.safetensors" "$work/$1/"
  chmod u+w "$work/$1/model.safetensors"
}
eval_tiny() {  # eval_tiny NAME REGEX: calq eval on $work/NAME must fail with REGEX
  expect "$1" "$2" -- "$calq" eval --model "$work/$1" --tokenizer "$tok512" --data "$tiny_text" \
    --seqlen 64 --max-windows 2
}

# 7. a NaN weight: refused as the layer loads, naming the tensor (not "ppl nan", exit 0)
fixture_copy nan-weight
off=$(tensor_offset "$work/nan-weight/model.safetensors" model.layers.1.mlp.down_proj.weight)
printf '\x00\x00\xc0\x7f' | dd of="$work/nan-weight/model.safetensors" bs=1 seek=$((off + 20)) \
  conv=notrunc status=none
eval_tiny nan-weight 'layer 1 mlp\.down: weight has 1 non-finite \(NaN/Inf\) entry .*weights as loaded.*model\.layers\.1\.mlp\.down_proj\.weight'

# 8. an Inf in the head
fixture_copy inf-head
off=$(tensor_offset "$work/inf-head/model.safetensors" lm_head.weight)
printf '\x00\x00\x80\x7f' | dd of="$work/inf-head/model.safetensors" bs=1 seek="$off" \
  conv=notrunc status=none
eval_tiny inf-head 'tensor "lm_head\.weight" has 1 non-finite \(NaN/Inf\) entry'

# 9. a NaN in the embedding row of BOS (token 1), which every window 0 starts with: not checked
#    at load (a row of an unused token is harmless), found by the perplexity's stage re-run
fixture_copy nan-embedding
off=$(tensor_offset "$work/nan-embedding/model.safetensors" model.embed_tokens.weight)
printf '\x00\x00\xc0\x7f' | dd of="$work/nan-embedding/model.safetensors" bs=1 \
  seek=$((off + 4 * 64)) conv=notrunc status=none
eval_tiny nan-embedding 'embedding output is non-finite \(first at window 0\); expected finite activations'

# 10. finite weights whose product overflows float32: layer 1's up projection all 1e4, so the
#     down projection's inputs exceed 1, and the down projection all FLT_MAX
fixture_copy overflow
fill() {  # fill NAME BYTES: every float32 of tensor NAME (64 x 172 of them) set to BYTES
  local off
  off=$(tensor_offset "$work/overflow/model.safetensors" "$1")
  for _ in $(seq $((64 * 172))); do printf "$2"; done |
    dd of="$work/overflow/model.safetensors" bs=4096 seek="$off" oflag=seek_bytes conv=notrunc \
      status=none
}
fill model.layers.1.mlp.up_proj.weight '\x00\x40\x1c\x46'
fill model.layers.1.mlp.down_proj.weight '\xff\xff\x7f\x7f'
eval_tiny overflow 'model\.layers\.1\.mlp\.down_proj output is non-finite \(first at window 0\); expected finite activations.*overflows'

# 11. tensors of a layer the config does not declare (num_hidden_layers 2 -> 1)
fixture_copy extra-layer
sed -i 's/"num_hidden_layers": 2/"num_hidden_layers": 1/' "$work/extra-layer/config.json"
eval_tiny extra-layer 'tensor "model\.layers\.1\.[a-z_.]*" belongs to layer 1, but config\.json declares layers 0\.\.0 only'

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

# expect_ok NAME STDOUT_REGEX STDERR_REGEX -- command...: exit 0 within the timeout (a hang
# fails instead of blocking the suite), stdout and stderr matching.
expect_ok() {
  local name="$1" out_regex="$2" err_regex="$3"; shift 4
  local out rc
  out="$(timeout 600 "$@" 2>"$work/stderr")"; rc=$?
  if [[ $rc -ne 0 ]] || ! printf '%s' "$out" | grep -Eq -e "$out_regex" ||
     ! grep -Eq -e "$err_regex" "$work/stderr"; then
    echo "FAIL $name: exit $rc, stdout: $out, stderr: $(head -c 2000 "$work/stderr")"
    failures=$((failures + 1)); return
  fi
  echo "ok   $name: $(grep -E -e "$err_regex" "$work/stderr" | head -1)"
  passed=$((passed + 1))
}

# 7a. more threads than cores: capped with a warning, and the eval completes.
stories_eval="$stories/tinystories_valid_eval.txt"
expect_ok threads-capped 'ppl [0-9.]+' 'warn.*--threads 100000: .*using [0-9]+ threads' -- \
  "$calq" --threads 100000 eval --model "$stories/stories260K.bin" --data "$stories_eval" \
  --seqlen 256 --max-windows 2

# 7c. windows longer than the model's positions; a batch of logits larger than the machine.
expect seqlen-positions '--seqlen: 100000 tokens per window, but the model has 512 positions' -- \
  "$calq" eval --model "$stories/stories260K.bin" --data "$stories_eval" --seqlen 100000
# 490 windows of 512 need ~10.5 GB; an address-space limit of 4 GB makes that machine-independent.
expect eval-memory '490 windows × 512 tokens × 4096 vocab.* GB, over the .* GB of memory available; expected --batch-size [0-9]+ or smaller' -- \
  bash -c 'ulimit -v 4000000 && exec "$@"' - "$calq" eval --model "$sotu" --data "$text" \
  --seqlen 512 --batch-size 1000

# 8a. file content in messages: a NUL and an escape sequence in merges.txt are escaped, and
# the message goes on past the NUL; control bytes in a path too.
cp -r "$data/gpt2-tokenizer" "$work/nul-tok"
{ head -n 1 "$data/gpt2-tokenizer/merges.txt"; printf 'a\0b \033[31mred c\n'; \
  tail -n +2 "$data/gpt2-tokenizer/merges.txt"; } > "$work/nul-tok/merges.txt"
expect nul-in-merges 'merges\.txt: line 2 "a\\u0000b \\u001b\[31mred c" is not a merge' -- \
  "$calq" eval --model "$data/hf-fixtures/gpt2" --tokenizer "$work/nul-tok" --data "$text"
expect control-in-path 'no such text file' -- \
  "$calq" eval --model "$sotu" --data "$work/$(printf 'bell\a\033[2J').txt" --seqlen 512

long_key="$(head -c 5000 /dev/zero | tr '\0' k)"
expect long-message "--set \"k{1900,2000}\.\.\.\$" -- \
  "$calq" run "$work/typo-key.yaml" --out "$work/out-long" --set "$long_key"

# 8b. things that are not files are named for what they are, and a FIFO never blocks.
mkfifo "$work/fifo.txt"
expect data-dev-zero '/dev/zero: a character device; expected a UTF-8 text file' -- \
  "$calq" eval --model "$sotu" --data /dev/zero --seqlen 512
expect data-fifo 'fifo\.txt: a FIFO; expected a UTF-8 text file' -- \
  timeout 60 "$calq" eval --model "$sotu" --data "$work/fifo.txt" --seqlen 512
shard_case() {  # shard_case NAME: a sharded fixture whose one shard is $work/NAME/shard.safetensors
  mkdir -p "$work/$1"
  cp "$fixture/config.json" "$work/$1/"
  printf '{"metadata": {}, "weight_map": {"model.embed_tokens.weight": "shard.safetensors"}}' \
    > "$work/$1/model.safetensors.index.json"
}
shard_case shard-fifo; mkfifo "$work/shard-fifo/shard.safetensors"
shard_case shard-dir; mkdir "$work/shard-dir/shard.safetensors"
shard_case shard-zero; ln -s /dev/zero "$work/shard-zero/shard.safetensors"
for kind in "fifo:a FIFO" "dir:a directory" "zero:a character device"; do
  expect "shard-${kind%%:*}" "shard\.safetensors \(for tensor .*\) is ${kind#*:}; expected a regular file" -- \
    timeout 60 "$calq" eval --model "$work/shard-${kind%%:*}" --tokenizer "$sotu/tokenizer.model" \
    --data "$text"
done
mkfifo "$work/model.bin"
expect model-fifo 'model\.bin: a FIFO; expected an HF model directory or a llama2\.c \.bin file' -- \
  timeout 60 "$calq" eval --model "$work/model.bin" --data "$text"
expect model-dev-zero '/dev/zero: a character device; expected an HF model directory' -- \
  "$calq" eval --model /dev/zero --data "$text"
expect tokenizer-dev-zero '/dev/zero: a character device; expected a llama2\.c \.bin' -- \
  "$calq" eval --model "$sotu" --tokenizer /dev/zero --data "$text"
mkdir -p "$work/single-fifo"; cp "$fixture/config.json" "$work/single-fifo/"
mkfifo "$work/single-fifo/model.safetensors"
expect single-fifo 'model\.safetensors: a FIFO; expected a regular file' -- \
  timeout 60 "$calq" eval --model "$work/single-fifo" --tokenizer "$sotu/tokenizer.model" --data "$text"

# 8c. --set without "=" and with an empty key.
recipe set-ok 4 32 "$calib"
expect set-no-equals "--set \"calibration\.seed\": no '='; expected key\.path=value" -- \
  "$calq" run "$work/set-ok.yaml" --out "$work/out-set" --set calibration.seed
expect set-empty-key "--set \"=3\": empty key before '='; expected key\.path=value" -- \
  "$calq" run "$work/set-ok.yaml" --out "$work/out-set" --set =3

# 8d. a compute dtype this LibTorch cannot run on the CPU fails before any work, naming the
# ones that work (Debian's LibTorch 1.13: no float16 matmul on CPU); where it can, it runs.
err="$("$calq" eval --model "$stories/stories260K.bin" --data "$stories_eval" --seqlen 256 \
  --max-windows 1 --dtype float16 2>&1 >/dev/null)"; rc=$?
if [[ $rc -eq 0 ]] || { [[ $rc -eq 1 ]] && printf '%s' "$err" | grep -Eq \
     '^calq: error: compute dtype float16 on cpu: .*; expected float32( or bfloat16)? on cpu' &&
     ! printf '%s' "$err" | grep -q 'ppl '; }; then
  echo "ok   float16-cpu: rc $rc ${err:+$err}"; passed=$((passed + 1))
else
  echo "FAIL float16-cpu: exit $rc: $err"; failures=$((failures + 1))
fi

# 8e. usage errors are user errors: one line, exit 1, readable bounds; --help and --version 0.
expect threads-negative '--threads: "-1" is not an integer of at least 0' -- \
  "$calq" --threads -1 eval --model "$sotu" --data "$text"
expect batch-zero '--batch-size: "0" is not an integer of at least 1' -- \
  "$calq" eval --model "$sotu" --data "$text" --batch-size 0
expect seqlen-range '--seqlen: "1" is not an integer in 2\.\.1048576' -- \
  "$calq" eval --model "$sotu" --data "$text" --seqlen 1
expect missing-option '--model is required' -- "$calq" eval --data "$text"
expect unknown-subcommand 'calq --help' -- "$calq" bogus
for flag in --help --version; do
  if "$calq" "$flag" >/dev/null 2>&1; then
    echo "ok   $flag: exit 0"; passed=$((passed + 1))
  else
    echo "FAIL $flag: exit $?"; failures=$((failures + 1))
  fi
done

echo "$passed passed, $failures failed"
[[ $failures -eq 0 ]]
