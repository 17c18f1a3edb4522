#!/usr/bin/env python3
"""What bfloat16 calibration and evaluation forwards cost in perplexity (issue 22 part 4).

`model.dtype: bfloat16` runs the layer forwards (calibration and evaluation) in bfloat16; the
statistics are still accumulated in float32/float64 (calib/linear_stats.h) and GPTQ solves in
float32. This runs configs/sweeps/bf16_sotu.yaml (RTN, GPTQ, AWQ W4 g128 on sotu-llama-6L, each
in float32 and bfloat16, plus the float model in both) and writes every run's perplexity and
quantization seconds to bench/results/bf16_effect.json; --table writes BENCHMARKS.md's section.

  bench/bf16_effect.py [--protocol demo|recipe] [--out DIR]   # runs the sweep, writes the JSON
  bench/bf16_effect.py --table [--write BENCHMARKS.md]
"""
import argparse
import datetime
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peer_gptq as pg  # noqa: E402  (write_section)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "bench", "results", "bf16_effect.json")
BEGIN, END = "<!-- bf16-effect:begin -->", "<!-- bf16-effect:end -->"


def run(a):
    calq = os.environ.get("CALQ_BIN", os.path.join(ROOT, "build", "calq"))
    data = os.path.join(ROOT, "data")
    cmd = [calq, "sweep", os.path.join(ROOT, "configs", "sweeps", "bf16_sotu.yaml"), "--out", a.out]
    if a.protocol == "demo":  # scripts/demo.sh's reduced protocol
        cmd += ["--set", "calibration.nsamples=32", "--set",
                f"eval.perplexity=[{{data: {data}/sotu-llama-6L/sotu_valid.txt, seqlen: 512, max_windows: 40}}]"]
    load_before = open("/proc/loadavg").read().split()[:3]
    if not a.reuse:
        subprocess.run(cmd, check=True)
    rows = []
    for name in sorted(os.listdir(os.path.join(a.out, "runs"))):
        r = json.load(open(os.path.join(a.out, "runs", name, "report.json")))
        rows.append({"run": name,
                     "method": "fp" if r.get("float") else next(iter(r["recipe"]["passes"][-1])),
                     "dtype": r["recipe"]["model"]["dtype"],
                     "ppl": r["eval"]["perplexity"][0]["ppl"],
                     "eval": {k: r["eval"]["perplexity"][0][k] for k in ("dataset", "seqlen", "windows")},
                     "quantization_s": r.get("quantization", {}).get("seconds")})
    out = {"benchmark": "bf16_effect", "protocol": a.protocol, "command": " ".join(cmd[1:]),
           "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "loadavg_before": load_before, "loadavg_after": open("/proc/loadavg").read().split()[:3],
           "git": subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"],
                                 capture_output=True, text=True).stdout.strip(),
           "runs": rows}
    tmp = a.json + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    os.rename(tmp, a.json)
    print(table(out))


def table(d):
    by = {}
    for r in d["runs"]:
        by.setdefault(r["method"], {})[r["dtype"]] = r
    lines = [BEGIN, "", "## bfloat16 forwards (`bench/bf16_effect.py`, issue 22 part 4)", "",
             f"sotu-llama-6L, W4 g128, `configs/sweeps/bf16_sotu.yaml` at the {d['protocol']} protocol; "
             f"perplexity on {d['runs'][0]['eval']['dataset']} ({d['runs'][0]['eval']['windows']} windows of "
             f"{d['runs'][0]['eval']['seqlen']}). `model.dtype: bfloat16` runs calibration and evaluation "
             "forwards in bfloat16, statistics in float32/float64. One run each, "
             f"{d['date']}, load {' '.join(d['loadavg_before'])} → {' '.join(d['loadavg_after'])}, binary {d['git']}.", "",
             "| method | ppl float32 | ppl bfloat16 | change | quantization s float32 / bfloat16 |",
             "|---|---|---|---|---|"]
    for method, row in by.items():
        f32, b16 = row.get("float32"), row.get("bfloat16")
        if not f32 or not b16:
            continue
        qs = "" if f32["quantization_s"] is None else f"{f32['quantization_s']:.1f} / {b16['quantization_s']:.1f}"
        lines.append(f"| {method} | {f32['ppl']:.4f} | {b16['ppl']:.4f} | {100 * (b16['ppl'] / f32['ppl'] - 1):+.3f} % | {qs} |")
    return "\n".join(lines + ["", END]) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--protocol", choices=["demo", "recipe"], default="demo")
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "bench", "bf16_sotu"))
    ap.add_argument("--json", default=RESULTS)
    ap.add_argument("--reuse", action="store_true", help="read an existing --out folder instead of running")
    ap.add_argument("--table", action="store_true")
    ap.add_argument("--write", help="with --table: the markdown file whose section to replace")
    a = ap.parse_args()
    if a.table:
        section = table(json.load(open(a.json)))
        if a.write:
            pg.write_section(a.write, section, BEGIN, END)
        else:
            sys.stdout.write(section)
        return
    run(a)


if __name__ == "__main__":
    main()
