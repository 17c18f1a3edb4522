#!/usr/bin/env python3
"""Summarises bench/awq_memory.sh's runs (RUNS.tsv: name|before or after|recipe|run dir|loadavg
before|loadavg after) into JSON: per run wall seconds and maximum RSS from /usr/bin/time -v,
report.json's memory and timing, every perplexity, and per recipe whether the two binaries'
perplexities are bit-identical (JSON doubles compared exactly)."""
import json
import re
import sys


def wall_seconds(text):
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", text).group(1)
    secs = 0.0
    for part in wall.split(":"):
        secs = secs * 60 + float(part)
    return secs


def main(runs_path, json_path, before_sha, after_sha):
    runs = {}
    for line in open(runs_path).read().splitlines():
        name, which, recipe, d, load0, load1 = line.split("|")
        report = json.load(open(f"{d}/report.json"))
        t = open(f"{d}.time").read()
        runs.setdefault(name, {"recipe": recipe})[which] = {
            "wall_seconds": wall_seconds(t),
            "max_rss_kib_time_v": int(
                re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1)),
            "report_peak_rss_mb": report.get("memory", {}).get("peak_rss_mb"),
            "report_timing": report.get("timing"),
            "perplexity": {p["dataset"]: p["ppl"] for p in report["eval"]["perplexity"]},
            "loadavg_before": load0,
            "loadavg_after": load1,
        }
    for r in runs.values():
        if "before" in r and "after" in r:
            b, a = r["before"], r["after"]
            r["perplexity_bit_identical"] = b["perplexity"] == a["perplexity"]
            r["peak_rss_ratio_after_over_before"] = a["max_rss_kib_time_v"] / b["max_rss_kib_time_v"]
            r["wall_ratio_after_over_before"] = a["wall_seconds"] / b["wall_seconds"]
    json.dump({"before_sha": before_sha, "after_sha": after_sha, "runs": runs},
              open(json_path, "w"), indent=2)
    print(json.dumps({k: {"bit_identical": v.get("perplexity_bit_identical"),
                          "rss_kib": [v[w]["max_rss_kib_time_v"] for w in ("before", "after") if w in v],
                          "wall_s": [v[w]["wall_seconds"] for w in ("before", "after") if w in v]}
                      for k, v in runs.items()}, indent=1))


BEGIN, END = "<!-- awq-memory:begin -->", "<!-- awq-memory:end -->"


def section(d):
    """BENCHMARKS.md's AWQ before/after section, from the JSON."""
    lines = [BEGIN, "", "## AWQ in bounded memory (`bench/awq_memory.sh`, issue 22 part 2)", "",
             f"Before = {d['before_sha'][:9]}, after = {d['after_sha'][:9]}; one run each, one after the other, "
             "on this 2-core machine (load = /proc/loadavg before → after). Max RSS from `/usr/bin/time -v`; "
             "the per-layer peaks are report.json `timing.layers` (after only).", "",
             "| recipe | binary | wall s | max RSS MiB | perplexities | load |", "|---|---|---|---|---|---|"]
    for name, r in d["runs"].items():
        for which in ("before", "after"):
            if which not in r:
                continue
            x = r[which]
            ppl = ", ".join(f"{k} {v:.6f}" for k, v in x["perplexity"].items())
            lines.append(f"| {name} | {which} | {x['wall_seconds']:.0f} | {x['max_rss_kib_time_v'] / 1024:.0f} | {ppl} "
                         f"| {' '.join(x['loadavg_before'].split()[:1])} → {' '.join(x['loadavg_after'].split()[:1])} |")
        if "perplexity_bit_identical" in r:
            layers = (r["after"].get("report_timing") or {}).get("layers", [])
            peaks = " → ".join(f"{t['peak_rss_mb']:.0f}" for t in layers)
            lines.append(f"| {name} | after / before | **{r['wall_ratio_after_over_before']:.2f}** "
                         f"| **{r['peak_rss_ratio_after_over_before']:.2f}** | bit-identical: "
                         f"{'yes' if r['perplexity_bit_identical'] else 'NO'} | per-layer peak MiB {peaks} |")
    return "\n".join(lines + ["", END]) + "\n"


if __name__ == "__main__":
    if sys.argv[1:2] == ["--table"]:
        sys.path.insert(0, __import__("os").path.dirname(__import__("os").path.abspath(__file__)))
        import peer_gptq as pg
        text = section(json.load(open(sys.argv[2])))
        if len(sys.argv) > 3:
            pg.write_section(sys.argv[3], text, BEGIN, END)
        else:
            sys.stdout.write(text)
    else:
        main(*sys.argv[1:5])
