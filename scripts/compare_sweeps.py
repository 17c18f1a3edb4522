#!/usr/bin/env python3
"""Regression check between two `calq sweep` output folders (e.g. the demo before and after a
change): every run's perplexities (nll, ppl per dataset) must agree to the last bit, and the
recipe hashes are listed side by side. Exit 1 on any difference, naming the run and the figure.

    scripts/compare_sweeps.py OUT_BEFORE OUT_AFTER [--hashes]   # --hashes: hashes must agree too
    scripts/compare_sweeps.py A B --rename sotu_gptq_w3g128=sotu_gptq_w4g128__bits-3 ...
      (--rename: a run of BEFORE is compared with the run of AFTER that has the new name)
"""
import argparse
import json
import pathlib
import sys


def load_runs(out: pathlib.Path) -> dict:
    runs = {}
    for report in sorted((out / "runs").glob("*/report.json")):
        runs[report.parent.name] = json.loads(report.read_text())
    if not runs:
        sys.exit(f"compare_sweeps: {out}/runs/*/report.json: no reports found")
    return runs


def figures(report: dict) -> dict:
    out = {}
    for entry in report.get("eval", {}).get("perplexity", []):
        for key in ("nll", "ppl"):
            out[f"{entry['dataset']}.{key}"] = entry[key]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=pathlib.Path)
    parser.add_argument("after", type=pathlib.Path)
    parser.add_argument("--hashes", action="store_true", help="recipe hashes must agree too")
    parser.add_argument("--rename", action="append", default=[], metavar="OLD=NEW",
                        help="compare BEFORE's run OLD with AFTER's run NEW (repeatable)")
    args = parser.parse_args()
    before, after = load_runs(args.before), load_runs(args.after)
    for pair in args.rename:
        old, sep, new = pair.partition("=")
        if not sep or old not in before:
            sys.exit(f"compare_sweeps: --rename {pair}: expected OLD=NEW with OLD a run of {args.before}")
        before[new] = before.pop(old)
    problems = []
    for name in sorted(set(before) | set(after)):
        if name not in before or name not in after:
            problems.append(f"{name}: only in {'before' if name in before else 'after'}")
            continue
        a, b = figures(before[name]), figures(after[name])
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                problems.append(f"{name}: {key} {a.get(key)!r} -> {b.get(key)!r}")
        ha, hb = before[name].get("recipe_hash"), after[name].get("recipe_hash")
        same = "same" if ha == hb else "CHANGED"
        print(f"{name}: {len(a)} figures compared; recipe hash {ha} -> {hb} ({same})")
        if args.hashes and ha != hb:
            problems.append(f"{name}: recipe hash {ha} -> {hb}")
    for p in problems:
        print(f"compare_sweeps: {p}", file=sys.stderr)
    if not problems:
        print("compare_sweeps: every figure identical to the last bit")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
