#!/usr/bin/env bash
# Exports sotu-llama-6L in every checkpoint format calq writes, re-evaluates each exported
# directory with `calq eval`, and compares with the perplexity of the in-memory quantized model on
# the same windows. Writes OUT/summary.json (one entry per export: format, scheme, both
# perplexities, relative difference, re-read and lint results) and prints a table from it.
# Usage: scripts/check_exports.sh [OUT_DIR] [MAX_WINDOWS]   (default out/exports, 40 windows)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$root/out/exports}"
windows="${2:-40}"
calq="$root/build/calq"
sotu="$root/data/sotu-llama-6L"
valid="$sotu/sotu_valid.txt"
mkdir -p "$out"

# name | base config | overrides (the scheme each format is checked with)
cases=(
  "gptq_w4g128_asym|sotu_rtn_w4g128|save.format=gptq"
  "gptq_w4g128_sym_actorder|sotu_gptq_w4g128|save.format=gptq scheme.weights.sym=true passes.0.gptq.act_order=true"
  "gptq_w3g128|sotu_rtn_w4g128|save.format=gptq scheme.weights.bits=3"
  "gptq_w8g128|sotu_rtn_w4g128|save.format=gptq scheme.weights.bits=8"
  "awq_w4g128|sotu_rtn_w4g128|save.format=awq scheme.weights.grid=awq"
  "ct_w4a16g128_asym|sotu_rtn_w4g128|save.format=compressed-tensors"
  "ct_w4a16g128_sym|sotu_rtn_w4g128|save.format=compressed-tensors scheme.weights.sym=true"
  "ct_w8a8|sotu_smoothquant_w8a8|save.format=compressed-tensors scheme.activations.bmm_inputs=false"
  "fake_w4g128_fp16|sotu_rtn_w4g128|save.format=fake"
)
for c in "${cases[@]}"; do
  IFS='|' read -r name config overrides <<< "$c"
  [[ -f "$out/$name/eval.json" ]] && continue
  sets=(--set "save.path=$out/$name/model" --set "eval.perplexity=[{data: $valid, seqlen: 512, max_windows: $windows}]")
  for o in $overrides; do sets+=(--set "$o"); done
  echo "== $name: $config $overrides" >&2
  "$calq" -q run "$root/configs/$config.yaml" "${sets[@]}" --out "$out/$name"
  "$calq" -q eval --model "$out/$name/model" --data "$valid" --seqlen 512 --max-windows "$windows" \
    --json "$out/$name/eval.json" > /dev/null
done

python3 - "$out" "${cases[@]}" <<'PY'
import json, sys, os
out = sys.argv[1]
rows = []
for c in sys.argv[2:]:
    name = c.split('|')[0]
    run = json.load(open(os.path.join(out, name, 'report.json')))
    ev = json.load(open(os.path.join(out, name, 'eval.json')))
    mem = run['eval']['perplexity'][0]['ppl']
    exp = ev['perplexity'][0]['ppl'] if 'perplexity' in ev else ev['ppl']
    rows.append({'name': name, 'format': run['export']['format'], 'scheme': run['recipe']['scheme'],
                 'ppl_in_memory': mem, 'ppl_exported': exp, 'rel_diff': abs(exp - mem) / mem,
                 'reread': run['export']['reread'], 'warnings': run['export']['warnings'],
                 'bytes': run['export']['bytes']})
json.dump(rows, open(os.path.join(out, 'summary.json'), 'w'), indent=2)
print(f"{'export':28} {'format':20} {'in-memory':>10} {'exported':>10} {'rel diff':>9}  re-read")
for r in rows:
    print(f"{r['name']:28} {r['format']:20} {r['ppl_in_memory']:10.4f} {r['ppl_exported']:10.4f} "
          f"{r['rel_diff']:9.2e}  {r['reread']['tensors']} bit-equal")
PY
