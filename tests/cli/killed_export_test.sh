#!/usr/bin/env bash
# An export killed with SIGKILL (fork: calq runs in the background; the test kills it) must leave
# nothing under the final directory name. CALQ_EXPORT_STALL holds calq with every file written
# under the temporary name, so the kill lands exactly before the rename, not at a random moment.
# Usage: killed_export_test.sh CALQ_BINARY DATA_DIR
set -uo pipefail
calq="$1"
data="$2"
fixture="$data/hf-fixtures/llama"
if [[ ! -d "$fixture" ]]; then
  echo "FAIL: test data missing: $fixture"; exit 1
fi
work="$(mktemp -d)"
pid=""
trap '[[ -n "$pid" ]] && kill -9 "$pid" 2>/dev/null; rm -rf "$work"' EXIT
cat > "$work/recipe.yaml" <<YAML
model: {path: $fixture}
scheme:
  weights: {bits: 4, group_size: -1, sym: true, grid: gptq}
passes: [rtn]
save: {format: fake, path: $work/exported}
YAML

CALQ_EXPORT_STALL=1 "$calq" -q run "$work/recipe.yaml" --out "$work/run" 2> "$work/stderr" &
pid=$!
for _ in $(seq 1 600); do
  grep -q "export stalled" "$work/stderr" && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
if ! grep -q "export stalled" "$work/stderr"; then
  echo "FAIL: calq never reached the stalled export; stderr:"; cat "$work/stderr"; exit 1
fi
tmp_dirs=("$work"/.exported.calq-tmp-*)
if [[ ! -f "${tmp_dirs[0]}/model.safetensors" ]]; then
  echo "FAIL: no files under the temporary name before the kill"; ls -la "$work"; exit 1
fi
kill -9 "$pid"
wait "$pid" 2>/dev/null
pid=""
if [[ -e "$work/exported" ]]; then
  echo "FAIL: a killed export left $work/exported"; exit 1
fi
echo "ok: killed export left no final directory (temporary: $(basename "${tmp_dirs[0]}"))"

# The same recipe without the stall completes and reloads.
"$calq" -q run "$work/recipe.yaml" --out "$work/run" || { echo "FAIL: export did not complete"; exit 1; }
[[ -f "$work/exported/config.json" && -f "$work/exported/model.safetensors" ]] \
  || { echo "FAIL: completed export is missing files"; exit 1; }
if [[ -e "${tmp_dirs[0]}" ]]; then
  echo "FAIL: the killed export's temporary directory was not cleaned up by the next export"; exit 1
fi
echo "ok: uninterrupted export wrote $work/exported"

# A packed export of the same model and what `calq inspect` says about it.
"$calq" -q run "$work/recipe.yaml" --set save.format=compressed-tensors --set scheme.weights.sym=false \
  --set "save.path=$work/packed" --out "$work/run2" || { echo "FAIL: packed export"; exit 1; }
inspect="$("$calq" inspect "$work/packed")" || { echo "FAIL: inspect"; exit 1; }
for want in "family        llama" "compressed-tensors (pack-quantized), 4-bit, group size -1, asym, act-order no" \
            "lint          asymmetric compressed-tensors"; do
  grep -qF "$want" <<< "$inspect" || { echo "FAIL: inspect lacks \"$want\":"; echo "$inspect"; exit 1; }
done
echo "ok: calq inspect describes the packed export"
