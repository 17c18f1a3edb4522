#!/usr/bin/env bash
# The GPU check of the kernel layer (docs/kernels.md §5), one prepared run on the device machine
# (an H100 with nvcc 13, CMake, ninja and PyTorch 2.11 but no package registry; 16 cores):
#   1. build calq and calq_cuda_tests with CALQ_CUDA=ON against the machine's PyTorch
#      (CALQ_TORCH_PYTHON=python3 scripts/build_cuda.sh; Debian packages from .debs/, fetched
#      beforehand where apt works with `scripts/build_cuda.sh fetch`);
#   2. the CUDA parity tests (tests/cuda/cuda_parity_test.cpp: GPTQ codes, Hessians, activation
#      fake-quant, sotu-llama-6L perplexity), as JUnit XML;
#   3. `calq bench gptq` on a 4096 x 4096 layer, CPU and CUDA;
#   4. `calq synth --preset llama-7b` (32 layers, fp16), then `calq run` GPTQ W4 g128 on CUDA.
# Each step has its own timeout; each step's status, seconds and last lines go into
# $OUT/device_check.json as soon as it ends, so a failed or killed step leaves the earlier ones'
# figures. Under 10 minutes in all (the step limits add up to 540 s).
#
# With the device tool: run `scripts/device_check.sh` with carry [".debs"] and timeout_s 600.
# Without $OUT (another machine), results go to ./out/device-check.
set -uo pipefail  # no -e: a failing step is recorded and the next one still runs
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${OUT:-$root/out/device-check}"
build="$root/build-cuda"
work="${TMPDIR:-/tmp}/calq-device-check"
mkdir -p "$out" "$work"
summary="$out/device_check.json"
begin=$(date +%s)
echo '{"steps": []}' >"$summary"

# step NAME LIMIT_S COMMAND...: runs it under `timeout`, then appends
# {name, status: ok|failed|timeout|skipped, rc, seconds, tail} to the summary.
step() {
  local name="$1" limit="$2"
  shift 2
  local log="$work/$name.log" start rc status
  start=$(date +%s)
  echo "device_check: $name (limit ${limit} s)" >&2
  timeout --kill-after=10 "$limit" "$@" >"$log" 2>&1
  rc=$?
  case $rc in
    0) status=ok ;;
    124 | 137) status=timeout ;;
    *) status=failed ;;
  esac
  python3 - "$summary" "$name" "$status" "$rc" "$(( $(date +%s) - start ))" "$log" <<'PY'
import json, sys
path, name, status, rc, seconds, log = sys.argv[1:]
with open(log, errors="replace") as f:
    tail = f.read().splitlines()[-25:]
data = json.load(open(path))
data["steps"].append({"name": name, "status": status, "rc": int(rc), "seconds": int(seconds),
                      "tail": tail})
json.dump(data, open(path, "w"), indent=1)
PY
  echo "device_check: $name: $status (rc $rc)" >&2
  return $rc
}

skip() {  # skip NAME REASON
  python3 - "$summary" "$1" "$2" <<'PY'
import json, sys
path, name, reason = sys.argv[1:]
data = json.load(open(path))
data["steps"].append({"name": name, "status": "skipped", "reason": reason})
json.dump(data, open(path, "w"), indent=1)
PY
}

# The machine, for the note.
python3 - "$summary" <<'PY'
import json, subprocess, sys
path = sys.argv[1]
data = json.load(open(path))
def run(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
    except Exception as e:
        return f"unavailable: {e}"
data["machine"] = {
    "gpu": run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"]),
    "nvcc": run(["nvcc", "--version"]).splitlines()[-1:],
    "torch": run(["python3", "-c", "import torch; print(torch.__version__, torch.version.cuda)"]),
    "cores": run(["nproc"]),
}
json.dump(data, open(path, "w"), indent=1)
PY

built=0
export CALQ_TORCH_PYTHON="${CALQ_TORCH_PYTHON:-python3}" CALQ_DEBS="$root/.debs"
if CALQ_CUDA_TARGETS="calq_core calq calq_cuda_tests" CALQ_CUDA_BUILD="$build" \
    step build 240 "$root/scripts/build_cuda.sh"; then
  built=1
fi
if [ $built = 1 ]; then
  eval "$("$root/scripts/build_cuda.sh" env)"
  step cuda_tests 120 "$build/tests/calq_cuda_tests" --reporter junit --out "$out/cuda_tests.xml" \
    --durations yes
  step bench_gptq_cuda 45 "$build/calq" bench gptq --rows 4096 --cols 4096 --device cuda \
    --repeat 3 --json "$out/bench_gptq_cuda.json"
  step bench_gptq_cpu 60 "$build/calq" --threads 16 bench gptq --rows 4096 --cols 4096 \
    --device cpu --repeat 1 --json "$out/bench_gptq_cpu.json"
  if step synth_7b 60 "$build/calq" synth --preset llama-7b --dtype float16 \
      --out "$work/llama-7b"; then
    cat >"$work/gptq_7b.yaml" <<YAML
# 32-layer 7B-shaped random model, GPTQ W4 g128 on CUDA (device_check.sh).
model: {path: $work/llama-7b, dtype: float16, device: cuda}
calibration: {data: $root/data/sotu-llama-6L/sotu_calib.txt, nsamples: 16, seqlen: 512, seed: 0}
scheme:
  weights: {bits: 4, group_size: 128, sym: false, grid: gptq}
passes:
  - gptq: {act_order: false, damp: 0.01, block_size: 128}
YAML
    step run_7b_gptq_cuda 180 "$build/calq" run "$work/gptq_7b.yaml" --out "$work/run-7b"
    [ -f "$work/run-7b/report.json" ] && cp "$work/run-7b/report.json" "$out/run_7b_report.json"
  else
    skip run_7b_gptq_cuda "synth_7b did not finish"
  fi
else
  for s in cuda_tests bench_gptq_cuda bench_gptq_cpu synth_7b run_7b_gptq_cuda; do
    skip "$s" "the CUDA build failed"
  done
fi

python3 - "$summary" "$(( $(date +%s) - begin ))" <<'PY'
import json, sys
path, seconds = sys.argv[1:]
data = json.load(open(path))
data["seconds"] = int(seconds)
data["ok"] = all(s["status"] == "ok" for s in data["steps"])
json.dump(data, open(path, "w"), indent=1)
print("device_check:", "all steps ok" if data["ok"] else "some steps failed", f"in {seconds} s",
      file=sys.stderr)
PY
