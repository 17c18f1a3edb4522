#!/usr/bin/env bash
# `calq synth`: a sharded random Llama that calq loads, inspects, quantizes with GPTQ and
# evaluates; the stated shape, the HF files, the weight scale and the outlier channels hold, and
# bad arguments fail with one line naming the flag. Needs no shared data.
# Usage: synth_test.sh CALQ_BINARY SOURCE_DIR
set -uo pipefail
calq="$1"
src="$2"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

model="$work/synth"
"$calq" -q synth --hidden 128 --intermediate 384 --layers 3 --heads 4 --kv-heads 2 --vocab 300 \
  --outlier-channels 2 --outlier-scale 20 --seed 7 --out "$model" || fail "synth"
for f in config.json tokenizer.json calq_synth.json model.safetensors.index.json \
         model-00001-of-00004.safetensors model-00004-of-00004.safetensors; do
  [[ -s "$model/$f" ]] || fail "missing $f"
done
[[ ! -e "$model.tmp-calq" ]] || fail "temporary directory left behind"
"$calq" inspect "$model" > "$work/inspect.txt" 2>&1 || fail "inspect: $(cat "$work/inspect.txt")"
grep -q "layers *3, hidden 128, intermediate 384" "$work/inspect.txt" || fail "shape: $(cat "$work/inspect.txt")"
grep -q "4 heads, 2 kv heads" "$work/inspect.txt" || fail "heads: $(cat "$work/inspect.txt")"

# Weight scale and outliers, read back through numpy-free python: the norm gains of the outlier
# channels (calq_synth.json) are ~20x the others'.
python3 - "$model" <<'PY' || fail "weights do not look as stated"
import json, struct, sys, array
d = sys.argv[1]
info = json.load(open(f"{d}/calq_synth.json"))
idx = json.load(open(f"{d}/model.safetensors.index.json"))["weight_map"]
def load(name):
    with open(f"{d}/{idx[name]}", "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        meta = json.loads(f.read(n))[name]
        f.seek(8 + n + meta["data_offsets"][0])
        raw = f.read(meta["data_offsets"][1] - meta["data_offsets"][0])
    assert meta["dtype"] == "F16", meta
    return [struct.unpack("<e", raw[i:i+2])[0] for i in range(0, len(raw), 2)]
w = load("model.layers.1.mlp.down_proj.weight")
std = (sum(x * x for x in w) / len(w)) ** 0.5
assert 0.018 < std < 0.022, std
g = load("model.layers.2.input_layernorm.weight")
out = info["outlier_channels"]
assert len(out) == 2, out
others = [abs(x) for i, x in enumerate(g) if i not in out]
assert min(abs(g[c]) for c in out) > 10 * max(others), (out, [g[c] for c in out], max(others))
PY

"$calq" -q run "$src/configs/synth_gptq_w4g128.yaml" --set model.path="$model" \
  --set calibration.data="$src/README.md" --set calibration.nsamples=4 --set calibration.seqlen=64 \
  --set "eval.perplexity=[{data: $src/README.md, seqlen: 64, max_windows: 4}]" \
  --out "$work/run" > "$work/run.out" 2>&1 || fail "gptq run: $(cat "$work/run.out")"
grep -q '"peak_rss_mb"' "$work/run/report.json" || fail "no peak RSS in report.json"
grep -q "ppl" "$work/run.out" || fail "no perplexity printed"

# --stream writes each layer as it is done: the same tensors and perplexity as the whole-model
# export, one shard per layer, and the memory estimate beside the measured peak.
for mode in whole stream; do
  flag=""; [[ $mode == stream ]] && flag="--stream"
  "$calq" -q run "$src/configs/synth_gptq_w4g128.yaml" $flag --set model.path="$model" \
    --set calibration.data="$src/README.md" --set calibration.nsamples=4 --set calibration.seqlen=64 \
    --set "save={format: gptq, path: $work/export-$mode}" \
    --set "eval.perplexity=[{data: $src/README.md, seqlen: 64, max_windows: 4}]" \
    --out "$work/run-$mode" > "$work/run-$mode.out" 2>&1 || fail "$mode run: $(cat "$work/run-$mode.out")"
done
[[ -s "$work/export-stream/model-00004-of-00004.safetensors" ]] || fail "no shard per layer: $(ls "$work/export-stream")"
python3 - "$work/export-whole" "$work/export-stream" "$work/run-whole/report.json" "$work/run-stream/report.json" <<'PY' || fail "streamed export differs"
import glob, json, os, struct, sys
def tensors(d):
    out = {}
    for f in glob.glob(os.path.join(d, "*.safetensors")):
        with open(f, "rb") as fh:
            n = struct.unpack("<Q", fh.read(8))[0]
            meta = json.loads(fh.read(n))
            for k, v in meta.items():
                if k == "__metadata__": continue
                fh.seek(8 + n + v["data_offsets"][0])
                out[k] = (v["dtype"], v["shape"], fh.read(v["data_offsets"][1] - v["data_offsets"][0]))
    return out
a, b = tensors(sys.argv[1]), tensors(sys.argv[2])
assert a.keys() == b.keys() and all(a[k] == b[k] for k in a), "tensors differ"
ra, rb = json.load(open(sys.argv[3])), json.load(open(sys.argv[4]))
assert ra["eval"]["perplexity"][0]["ppl"] == rb["eval"]["perplexity"][0]["ppl"], "ppl differs"
est = rb["memory"]["estimate"]
assert est["total_mb"] > 0 and est["layer_mb"] > 0 and "formula" in est, est
PY
"$calq" run "$src/configs/synth_gptq_w4g128.yaml" --stream --set model.path="$model" \
  --set calibration.data="$src/README.md" > "$work/nosave.out" 2>&1 && fail "--stream without save was accepted"
grep -q "^calq: error: --stream: .*expected a save section" "$work/nosave.out" || fail "message: $(cat "$work/nosave.out")"

"$calq" synth --hidden 100 --intermediate 8 --layers 1 --heads 3 --out "$work/bad" > "$work/bad.out" 2>&1 \
  && fail "a hidden size that heads do not divide was accepted"
grep -q "^calq: error: --hidden 100 is not a multiple of --heads 3" "$work/bad.out" || fail "message: $(cat "$work/bad.out")"
# Families and presets: a preset's shape with flags overriding it; bad names and contradictions
# fail with one line naming the flag.
"$calq" -q synth --preset gemma3-1b --layers 1 --vocab 300 --out "$work/gemma3" || fail "synth --preset gemma3-1b"
"$calq" inspect "$work/gemma3" > "$work/gemma3.txt" 2>&1 || fail "inspect gemma3: $(cat "$work/gemma3.txt")"
grep -q "model_type gemma3_text" "$work/gemma3.txt" || fail "gemma3 family: $(cat "$work/gemma3.txt")"
grep -q "layers *1, hidden 1152, intermediate 6912" "$work/gemma3.txt" || fail "gemma3 shape: $(cat "$work/gemma3.txt")"
grep -q "4 heads, 1 kv heads, head_dim 256" "$work/gemma3.txt" || fail "gemma3 heads: $(cat "$work/gemma3.txt")"
grep -q '"family": "gemma3"' "$work/gemma3/calq_synth.json" || fail "calq_synth.json: no family"
expect_error() {  # expect_error MESSAGE_REGEX ARGS...
  local want="$1"; shift
  "$calq" synth "$@" --out "$work/refused" > "$work/refused.out" 2>&1 && fail "accepted: $*"
  grep -q "^calq: error: $want" "$work/refused.out" || fail "message for $*: $(cat "$work/refused.out")"
  [[ $(wc -l < "$work/refused.out") -eq 1 ]] || fail "not one line for $*: $(cat "$work/refused.out")"
}
expect_error '--family: "nope" is not supported; expected one of llama, llama3, qwen3, gemma3' \
  --family nope --hidden 64 --intermediate 64 --layers 1 --heads 2
expect_error '--preset: "llama-70b" is not a preset; expected one of' --preset llama-70b
expect_error '--family qwen3 contradicts --preset llama3-8b' --preset llama3-8b --family qwen3
expect_error '--hidden: missing; expected a value or a --preset' --intermediate 64 --layers 1 --heads 2
echo "PASS"
