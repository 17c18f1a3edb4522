#!/usr/bin/env bash
# `calq sweep`: the cross product runs, the float row comes first, a sweep that stopped half-way
# resumes (finished runs are skipped by recipe hash) and ends with the same table, bit for bit,
# as an uninterrupted sweep.
# Usage: sweep_test.sh CALQ_BINARY SOURCE_DIR DATA_DIR
set -uo pipefail
calq="$1"
src="$2"
data="$3"
if [[ ! -d "$data/stories260K" ]]; then
  echo "FAIL: test data missing: $data"; exit 1
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
recipe="$src/configs/tiny_rtn_w4g32.yaml"
few="eval.perplexity.0.max_windows=20"
fail() { echo "FAIL: $*"; exit 1; }

# Half a sweep (bits 4 only), then the whole one into the same directory.
"$calq" -q sweep "$recipe" --grid scheme.weights.bits=4 --grid "$few" --out "$work/resumed" > /dev/null \
  || fail "first half of the sweep"
"$calq" sweep "$recipe" --grid scheme.weights.bits=4,3 --grid "$few" --out "$work/resumed" \
  > "$work/resumed.out" 2> "$work/resumed.err" || fail "resumed sweep"
grep -q "3 runs (2 resumed" "$work/resumed.err" || { cat "$work/resumed.err"; fail "the resumed sweep did not skip the finished runs"; }

"$calq" -q sweep "$recipe" --grid scheme.weights.bits=4,3 --grid "$few" --out "$work/fresh" > /dev/null \
  || fail "uninterrupted sweep"
cmp -s "$work/resumed/table.md" "$work/fresh/table.md" || fail "tables differ: $(diff "$work/resumed/table.md" "$work/fresh/table.md")"
cmp -s "$work/resumed/table.csv" "$work/fresh/table.csv" || fail "csv files differ"
[[ -d "$work/fresh/runs/tiny_rtn_w4g32__bits-3__max_windows-20" ]] || fail "run directory missing"
sed -n 3p "$work/fresh/table.md" | grep -q "^| FP (float32) |" || fail "the float row is not first: $(cat "$work/fresh/table.md")"
grep -q "^| RTN | [0-9.]* | [0-9.]* |" "$work/fresh/table.md" || fail "no RTN row with two cells"
[[ $(wc -l < "$work/fresh/table.csv") -eq 4 ]] || fail "table.csv should hold a header and 3 figures"
if command -v gnuplot > /dev/null; then
  [[ -s "$work/fresh/ppl_vs_bits.png" && -s "$work/fresh/ppl_vs_bits.svg" ]] || fail "no plot"
fi

# The calibration cache: a GPTQ W3 run after a W4 run reuses exactly layer 0's first subset (the
# float model's statistics; later ones see the recipe's own quantized weights). With the runs
# deleted but the cache kept, every step is reused and the table is the same, bit for bit.
gptq="$src/configs/tiny_gptq_w4g32.yaml"
gsweep() {
  "$calq" sweep "$gptq" --no-float --set calibration.nsamples=8 --grid scheme.weights.bits=4,3 \
    --grid "$few" --out "$work/gptq" > /dev/null 2> "$work/gptq.err" || { cat "$work/gptq.err"; fail "gptq sweep"; }
}
gsweep
grep -q "bits-4__max_windows-20 reused 0 of 20 calibration steps" "$work/gptq.err" || { cat "$work/gptq.err"; fail "the first run should collect all 20 steps"; }
grep -q "bits-3__max_windows-20 reused 1 of 20 calibration steps from the cache (layer 0 step 0)" "$work/gptq.err" \
  || { cat "$work/gptq.err"; fail "the W3 run should reuse only layer 0's float statistics"; }
cp "$work/gptq/table.md" "$work/gptq_first.md"
rm -rf "$work/gptq/runs"
gsweep
[[ $(grep -c "reused 20 of 20 calibration steps" "$work/gptq.err") -eq 2 ]] || { cat "$work/gptq.err"; fail "a rerun should reuse every step"; }
cmp -s "$work/gptq/table.md" "$work/gptq_first.md" || fail "cached statistics changed the table: $(diff "$work/gptq/table.md" "$work/gptq_first.md")"
[[ -d "$work/gptq/calib-cache" ]] || fail "no cache folder under OUT/calib-cache"

# A sweep file (cli/sweep_plan.h) plans the same runs as the command line: swept into the
# folder of the command-line sweep, every run is found done by its recipe hash.
cat > "$work/plan.yaml" <<PLAN
# a comment
sweep:
  - recipes: [$recipe]
    grid: {scheme.weights.bits: [4, 3]}
PLAN
"$calq" sweep "$work/plan.yaml" --grid "$few" --out "$work/fresh" > /dev/null 2> "$work/plan.err" \
  || { cat "$work/plan.err"; fail "sweep file"; }
grep -q "3 runs (3 resumed" "$work/plan.err" || { cat "$work/plan.err"; fail "the sweep file planned other runs than --grid"; }
# Bad sweep files: one line naming the file and the entry.
printf 'sweep:\n  - recipes: [%s]\n    grids: {scheme.weights.bits: [4]}\n' "$recipe" > "$work/bad.yaml"
"$calq" sweep "$work/bad.yaml" --out "$work/bad" 2> "$work/bad.err" && fail "a misspelt key was accepted"
grep -q "bad.yaml: sweep.0.grids: unknown key; expected recipes, grid or set" "$work/bad.err" || { cat "$work/bad.err"; fail "wrong error for a misspelt key"; }
[[ $(wc -l < "$work/bad.err") -eq 1 ]] || { cat "$work/bad.err"; fail "more than one error line"; }
printf 'sweep:\n  - recipes: [%s]\n  - recipes: [%s]\n' "$recipe" "$recipe" > "$work/twice.yaml"
"$calq" sweep "$work/twice.yaml" --out "$work/twice" 2> "$work/twice.err" && fail "a run planned twice was accepted"
grep -q "comes twice" "$work/twice.err" || { cat "$work/twice.err"; fail "wrong error for a run planned twice"; }
[[ ! -e "$work/bad" && ! -e "$work/twice" ]] || fail "a refused sweep left its folder behind"
# Every sweep file the repository ships plans and resolves (--dry-run runs nothing).
for f in "$src"/configs/sweeps/*.yaml; do
  "$calq" sweep "$f" --dry-run --out "$work/dry" > "$work/dry.out" 2> "$work/dry.err" \
    || { cat "$work/dry.err"; fail "$f does not plan"; }
  [[ -s "$work/dry.out" && ! -e "$work/dry" ]] || fail "$f: --dry-run listed nothing or wrote"
done

echo "ok: sweep resumed, identical tables:"; cat "$work/fresh/table.md"
