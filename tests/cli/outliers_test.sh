#!/usr/bin/env bash
# calq outliers (issue #4; groups from the family's layer schema since issue #19):
#  (a) sotu-llama-6L with outlier channels evaluates to the same perplexity (the float function
#      is unchanged; a power-of-two factor keeps float32 exact up to rounding in the GEMMs);
#  (b) the norm gains of the picked channels are 64x the source's and the reading linears'
#      columns 1/64x, for a Llama and an OPT (LayerNorm: β too) fixture;
#  (c) a checkpoint that stores q, k, v fused (GPT-2's c_attn) is refused with one line.
# Usage: outliers_test.sh CALQ_BINARY DATA_DIR
set -uo pipefail
calq="$1"
data="$2"
if [[ ! -d "$data/sotu-llama-6L" ]]; then
  echo "FAIL: test data missing: $data"; exit 1
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failures=0
fail() { echo "FAIL $*"; failures=$((failures + 1)); }

# (a) same perplexity
sotu="$data/sotu-llama-6L"
"$calq" -q outliers "$sotu" --out "$work/sotu" || fail "(a) calq outliers on sotu-llama-6L"
ppl() { "$calq" -q eval --model "$1" --data "$sotu/sotu_valid.txt" --seqlen 128 --max-windows 4 |
          sed -E 's/.*ppl ([0-9.]+).*/\1/'; }
before="$(ppl "$sotu")"; after="$(ppl "$work/sotu")"
python3 -c "import sys; b,a=float('$before'),float('$after'); sys.exit(abs(a-b)/b > 1e-5)" ||
  fail "(a) perplexity moved: $before -> $after"

# (b) the rewrite itself, read back with the safetensors layout (8-byte header length, JSON header).
check_rewrite() {  # check_rewrite FIXTURE NORM LINEAR [BIAS]
  local fixture="$data/hf-fixtures/$1"
  "$calq" -q outliers "$fixture" --out "$work/$1" --channels 3 || { fail "(b) calq outliers $1"; return; }
  python3 - "$fixture/model.safetensors" "$work/$1/model.safetensors" "$work/$1/calq_outliers.json" \
      "$2" "$3" "${4:-}" <<'PY' || fail "(b) $1: $2 / $3 not rescaled as expected"
import json, struct, sys
def read(path):
    raw = open(path, 'rb').read()
    n = struct.unpack('<Q', raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    def tensor(name):
        meta = header[name]
        assert meta['dtype'] == 'F32', meta['dtype']
        a, b = meta['data_offsets']
        body = raw[8 + n + a:8 + n + b]
        return list(struct.unpack('<%df' % (len(body) // 4), body)), meta['shape']
    return tensor
src, out = read(sys.argv[1]), read(sys.argv[2])
info = json.load(open(sys.argv[3]))
channels, factor = info['channels'], info['factor']
assert len(channels) == 3 and factor == 64
for name in [sys.argv[4]] + ([sys.argv[6]] if sys.argv[6] else []):
    (a, _), (b, _) = src(name), out(name)
    for c in range(len(a)):
        want = a[c] * factor if c in channels else a[c]
        assert b[c] == want, (name, c, a[c], b[c])
(w, shape), (v, _) = src(sys.argv[5]), out(sys.argv[5])
rows, cols = shape
for r in range(rows):
    for c in range(cols):
        want = w[r * cols + c] / factor if c in channels else w[r * cols + c]
        assert abs(v[r * cols + c] - want) <= 1e-7 * abs(want), (r, c)
PY
}
check_rewrite llama model.layers.1.post_attention_layernorm.weight model.layers.1.mlp.up_proj.weight
check_rewrite opt model.decoder.layers.0.self_attn_layer_norm.weight \
  model.decoder.layers.0.self_attn.k_proj.weight model.decoder.layers.0.self_attn_layer_norm.bias

# (c) fused q, k, v
msg="$("$calq" outliers "$data/hf-fixtures/gpt2" --out "$work/gpt2" 2>&1)"; rc=$?
[[ $rc -eq 1 && "$msg" == *"attn.q is stored fused"* && $(wc -l <<< "$msg") -eq 1 ]] ||
  fail "(c) gpt2: rc $rc: $msg"
[[ ! -e "$work/gpt2" ]] || fail "(c) gpt2: an output directory was left behind"

if [[ $failures -gt 0 ]]; then echo "$failures check(s) failed"; exit 1; fi
echo "outliers: all checks passed"
