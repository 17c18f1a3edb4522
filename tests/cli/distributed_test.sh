#!/usr/bin/env bash
# calq on several ranks (issue 23; docs/distributed.md), Gloo over loopback on this machine:
#  1. GPTQ W4 g128 act-order on sotu-llama-6L with 1, 2 and 3 ranks (calq run --nproc): the
#     same checkpoint bytes and perplexity; AWQ W4 g128 with 1, 2 and 3 ranks (a chunk budget
#     that cuts the grid search into several chunks, so every rank evaluates some; the clip
#     searches spread over the ranks) and SmoothQuant W8A8 with 1 and 2 ranks (AWQ's
#     checkpoint, SmoothQuant's logits); a Mixtral-shaped synth model (4 experts, top 2)
#     with 1 and 2 ranks. Every rank runs one thread (--threads 1): CPU kernels round by thread
#     count, not by rank count, so equal threads per rank is the comparison that isolates the
#     sharding.
#  2. Ranks started the way torchrun starts them (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT
#     set by hand, one process each), and by torchrun itself: the same result; --stream too.
#  3. A rank SIGKILLed mid-run: the other exits within the timeout with one line naming rank 1;
#     the resume state survives, and `calq run --resume` with 3 ranks gives the uninterrupted
#     checkpoint byte for byte.
#  4. A rank that stops answering (SIGSTOP): the other exits after --dist-timeout naming it.
#  5. Bad launcher variables: one error line.
# Usage: distributed_test.sh CALQ_BINARY DATA_DIR
set -uo pipefail
calq="$1"
data="$(cd "$2" && pwd)"
model="$data/sotu-llama-6L"
[[ -d "$model" ]] || { echo "FAIL: test data missing: $model"; exit 1; }
work="$(mktemp -d)"
pids=()
trap 'for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done; rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

recipe() {  # recipe NAME PASS-YAML SCHEME-YAML
  cat > "$work/$1.yaml" <<YAML
model: {path: $model, dtype: float32}
calibration: {data: $model/sotu_calib.txt, nsamples: 24, seqlen: 256, seed: 0}
scheme: $3
passes:
  - $2
eval:
  perplexity:
    - {data: $model/sotu_valid.txt, seqlen: 256, max_windows: 12}
YAML
}
recipe gptq "gptq: {act_order: true, damp: 0.01, block_size: 128}" \
  "{weights: {bits: 4, group_size: 128, sym: false, grid: gptq}}"
recipe awq "awq: {max_chunk_memory: 40M}" "{weights: {bits: 4, group_size: 128, sym: false, grid: gptq}}"
recipe sq "smoothquant: {alpha: 0.5}" \
  "{weights: {bits: 8, group_size: -1, sym: true, grid: absmax}, activations: {bits: 8, granularity: token, dynamic: true, sym: true, bmm_inputs: true}}"

ppl_of() { python3 -c 'import json,sys; print(repr(json.load(open(sys.argv[1]))["eval"]["perplexity"][0]["ppl"]))' "$1"; }

# run NAME RECIPE NPROC [save format]: a run in $work/NAME (batch 4: 6 batches to share out).
run() {
  local name="$1" r="$2" n="$3" format="${4:-gptq}"
  "$calq" -q --threads 1 run "$work/$r.yaml" --batch-size 4 --no-cache --nproc "$n" \
    --set "save={format: $format, path: $work/$name/ckpt}" --out "$work/$name" \
    > "$work/$name.out" 2> "$work/$name.err" || { cat "$work/$name.err"; fail "$name failed"; }
}
same_ckpt() {
  cmp -s "$work/$1/ckpt/model.safetensors" "$work/$2/ckpt/model.safetensors" ||
    fail "$2: checkpoint differs from $1"
  [[ "$(ppl_of "$work/$1/report.json")" == "$(ppl_of "$work/$2/report.json")" ]] ||
    fail "$2: perplexity $(ppl_of "$work/$2/report.json") != $(ppl_of "$work/$1/report.json")"
}

# 1. World sizes.
run gptq1 gptq 1; run gptq2 gptq 2; run gptq3 gptq 3
same_ckpt gptq1 gptq2; same_ckpt gptq1 gptq3
python3 - "$work/gptq2/report.json" <<'PY' || fail "gptq2: report.json does not record 2 ranks"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["ranks"] == {"world_size": 2, "backend": "gloo"}, r["ranks"]
PY
echo "ok: gptq act-order 1/2/3 ranks: ppl $(ppl_of "$work/gptq1/report.json"), same bytes"
run awq1 awq 1; run awq2 awq 2; run awq3 awq 3
same_ckpt awq1 awq2; same_ckpt awq1 awq3
awq_split=$(python3 - "$work/awq3/report.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
chunks, owners = 0, set()
for layer in r["passes"][0]["layers"]:
    for figures in layer["linears"].values():
        chunks = max(chunks, int(figures.get("search_chunks", 0)))
        if "clip_owner_rank" in figures: owners.add(int(figures["clip_owner_rank"]))
assert chunks >= 3, f"the grid search ran in {chunks} chunks; expected >= 3 to share over 3 ranks"
assert owners == {0, 1, 2}, f"clip searches ran on ranks {sorted(owners)}; expected 0, 1, 2"
print(f"grid losses of up to {chunks} chunks shared, clip searches on ranks 0-2")
PY
) || fail "awq3: $awq_split"
echo "ok: awq 1/2/3 ranks: ppl $(ppl_of "$work/awq1/report.json"), same bytes; $awq_split"
for n in 1 2; do
  "$calq" -q --threads 1 run "$work/sq.yaml" --batch-size 4 --no-cache --nproc "$n" \
    --out "$work/sq$n" --logits "$work/sq$n.logits" > /dev/null 2> "$work/sq$n.err" ||
    { cat "$work/sq$n.err"; fail "sq$n"; }
done
cmp -s "$work/sq1.logits" "$work/sq2.logits" || fail "smoothquant: 2-rank logits differ"
echo "ok: smoothquant w8a8 1/2 ranks: ppl $(ppl_of "$work/sq1/report.json"), same logits"

"$calq" -q synth --family mixtral --hidden 128 --intermediate 256 --layers 2 --heads 4 \
  --kv-heads 2 --experts 4 --top-k 2 --out "$work/mixtral" > /dev/null 2>&1 || fail "synth mixtral"
cat > "$work/moe.yaml" <<YAML
model: {path: $work/mixtral}
calibration: {data: $model/sotu_calib.txt, nsamples: 12, seqlen: 128, seed: 0}
scheme: {weights: {bits: 4, group_size: 128, sym: false, grid: gptq}}
passes:
  - gptq: {act_order: false, damp: 0.01, block_size: 128}
eval:
  perplexity:
    - {data: $model/sotu_valid.txt, seqlen: 128, max_windows: 6}
YAML
run moe1 moe 1; run moe2 moe 2
same_ckpt moe1 moe2
owners=$(python3 - "$work/moe2/report.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
owners = {}
for layer in r["passes"][0]["layers"]:
    for name, figures in layer["linears"].items():
        if "experts" in name:
            owners.setdefault(int(figures["owner_rank"]), []).append(name)
assert sorted(owners) == [0, 1], owners  # the experts' GPTQ ran on both ranks
print(" ".join(f"rank {k}: {len(v)} expert linears" for k, v in sorted(owners.items())))
PY
) || fail "moe2: experts not spread over both ranks"
echo "ok: mixtral-shaped (4 experts, top 2) 1/2 ranks: same bytes; GPTQ owners $owners"

# 2. A launcher's variables, one process per rank.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
for r in 0 1; do
  RANK=$r LOCAL_RANK=$r WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
    "$calq" -q --threads 1 run "$work/gptq.yaml" --batch-size 4 --no-cache \
    --set "save={format: gptq, path: $work/env2/ckpt}" --out "$work/env2" \
    > "$work/env2.$r.out" 2> "$work/env2.$r.err" &
  pids+=($!)
done
wait "${pids[@]}" || fail "env launch: $(cat "$work"/env2.*.err)"
pids=()
same_ckpt gptq1 env2
echo "ok: RANK/WORLD_SIZE/MASTER_* from the environment: same bytes"

# torchrun itself (the venv's, PyTorch's launcher): its agent hosts the store.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
torchrun="${CALQ_VENV:-$root/.venv}/bin/torchrun"
[[ -x "$torchrun" ]] || fail "torchrun not found at $torchrun (scripts/setup.sh installs torch)"
"$torchrun" --nproc-per-node 2 --no-python "$calq" -q --threads 1 run "$work/gptq.yaml" \
  --batch-size 4 --no-cache --set "save={format: gptq, path: $work/torchrun/ckpt}" \
  --out "$work/torchrun" > "$work/torchrun.out" 2> "$work/torchrun.err" ||
  { tail -5 "$work/torchrun.err"; fail "torchrun --nproc-per-node 2"; }
same_ckpt gptq1 torchrun
echo "ok: torchrun --nproc-per-node 2 --no-python calq run: same bytes"

# --stream: rank 0 writes each layer as it is final, every rank frees it; the same shards.
for n in 1 2; do
  "$calq" -q --threads 1 run "$work/gptq.yaml" --batch-size 4 --no-cache --stream --nproc "$n" \
    --set "save={format: gptq, path: $work/stream$n/ckpt}" --out "$work/stream$n" \
    > /dev/null 2> "$work/stream$n.err" || { cat "$work/stream$n.err"; fail "stream$n"; }
done
for f in "$work"/stream1/ckpt/*.safetensors; do
  cmp -s "$f" "$work/stream2/ckpt/$(basename "$f")" || fail "--stream: $(basename "$f") differs on 2 ranks"
done
echo "ok: --stream 1/2 ranks: same shards"

# 3. Kill rank 1 mid-run (its -v log says it reached layer 2), resume on 3 ranks.
"$calq" -v --threads 1 --dist-timeout 20 run "$work/gptq.yaml" --batch-size 4 --no-cache \
  --nproc 2 --set "save={format: gptq, path: $work/killed/ckpt}" --out "$work/killed" \
  > "$work/killed.out" 2> "$work/killed.err" &
launcher=$!
pids+=("$launcher")
rank1=""
for _ in $(seq 600); do
  rank1=$(pgrep -P "$launcher" | while read -r p; do
            grep -qz '^RANK=1$' "/proc/$p/environ" 2>/dev/null && echo "$p"; done)
  [[ -n "$rank1" ]] && grep -q "layer 2 step" "$work/killed.err" && break
  sleep 0.1
done
[[ -n "$rank1" ]] || fail "kill: rank 1 not found"
kill -9 "$rank1"
killed_at=$(date +%s)
wait "$launcher"
rc=$?
elapsed=$(( $(date +%s) - killed_at ))
[[ $rc -ne 0 ]] || fail "kill: the launcher exited 0"
(( elapsed <= 25 )) || fail "kill: the survivor took ${elapsed} s (timeout 20)"
grep -q "rank 0 of 2: distributed: rank 1 of 2 exited" "$work/killed.err" ||
  { tail -3 "$work/killed.err"; fail "kill: no line naming rank 1"; }
[[ -f "$work/killed/resume/run.json" ]] || fail "kill: the resume state is gone"
[[ ! -e "$work/killed/ckpt" && ! -e "$work/killed/report.json" ]] ||
  fail "kill: a partial output is left under its final name"
echo "ok: rank 1 killed: rank 0 exited in ${elapsed} s: $(grep -o 'distributed: rank 1 of 2 exited[^(]*' "$work/killed.err" | head -1)"
"$calq" -q --threads 1 run --resume "$work/killed" --nproc 3 > /dev/null 2> "$work/resumed.err" ||
  { cat "$work/resumed.err"; fail "resume on 3 ranks"; }
same_ckpt gptq1 killed
echo "ok: resumed on 3 ranks: same bytes as the uninterrupted run"

# 4. A rank that stops answering. Its own session, so that stopping it sends no SIGHUP to the
#    process group (POSIX orphaned-group rule).
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
pids=()
for r in 0 1; do
  RANK=$r WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
    setsid "$calq" -v --threads 1 --dist-timeout 5 run "$work/gptq.yaml" --batch-size 4 \
    --no-cache --out "$work/hung" > "$work/hung.$r.out" 2> "$work/hung.$r.err" &
  pids+=($!)
done
for _ in $(seq 600); do grep -q "layer 1 step" "$work/hung.1.err" && break; sleep 0.1; done
kill -STOP "${pids[1]}"
stopped_at=$(date +%s)
wait "${pids[0]}"
elapsed=$(( $(date +%s) - stopped_at ))
{ kill -9 "${pids[1]}"; wait "${pids[1]}"; } 2>/dev/null
grep -q "rank 1 of 2 stopped answering" "$work/hung.0.err" ||
  { tail -3 "$work/hung.0.err"; fail "hung: no line naming rank 1"; }
(( elapsed <= 15 )) || fail "hung: rank 0 took ${elapsed} s (timeout 5)"
echo "ok: rank 1 stopped: rank 0 exited in ${elapsed} s naming it"
pids=()

# 5. Launcher variables that make no group.
if RANK=5 WORLD_SIZE=2 "$calq" -q run "$work/gptq.yaml" --out "$work/bad" 2> "$work/bad.err"; then
  fail "RANK=5 WORLD_SIZE=2 was accepted"
fi
[[ $(wc -l < "$work/bad.err") -eq 1 ]] && grep -q "environment RANK" "$work/bad.err" ||
  { cat "$work/bad.err"; fail "bad RANK: expected one line naming RANK"; }
echo "ok: RANK=5 WORLD_SIZE=2: $(cat "$work/bad.err")"
echo "PASS"
