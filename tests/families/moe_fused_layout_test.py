#!/usr/bin/env python3
"""ctest `families.moe_fused_layout`: a mixture-of-experts checkpoint whose experts are stored
fused (transformers 5's in-memory layout: <block>.experts.gate_up_proj [E, 2I, H], gate rows
first, and <block>.experts.down_proj [E, H, I]) reads exactly as the per-expert one, and an
export from it writes the per-expert layout.

For the mixtral and qwen3_moe fixtures: the fused copy's `calq eval` perplexity equals the
per-expert original's bit for bit, and a GPTQ W4 fake export of the fused copy holds every
per-expert tensor and no fused one.

Usage: moe_fused_layout_test.py CALQ FIXTURES_DIR SHARED_DATA   (run with the venv's Python)
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import torch
from safetensors.torch import load_file, save_file

CASES = {"mixtral": ("block_sparse_moe", "w1", "w3", "w2"),
         "qwen3_moe": ("mlp", "gate_proj", "up_proj", "down_proj")}


def fuse(src, dst, block, gate, up, down):
    """Copies the checkpoint at src to dst with every sparse layer's experts fused."""
    shutil.copytree(src, dst)
    tensors = load_file(os.path.join(src, "model.safetensors"))
    out, layers = {}, set()
    for name, t in tensors.items():
        if f".{block}.experts." in name:
            layers.add(name.split(f".{block}.experts.")[0])
        else:
            out[name] = t
    for prefix in sorted(layers):
        base = f"{prefix}.{block}.experts"
        n = len({k.split(".")[0] for k in (name[len(base) + 1:] for name in tensors if name.startswith(base + "."))})
        out[base + ".gate_up_proj"] = torch.stack([
            torch.cat([tensors[f"{base}.{e}.{gate}.weight"], tensors[f"{base}.{e}.{up}.weight"]], 0)
            for e in range(n)]).contiguous()
        out[base + ".down_proj"] = torch.stack([tensors[f"{base}.{e}.{down}.weight"]
                                                for e in range(n)]).contiguous()
    save_file(out, os.path.join(dst, "model.safetensors"), metadata={"format": "pt"})
    return len(layers)


def main():
    calq, fixtures, data = sys.argv[1:4]
    stories = os.path.join(data, "stories260K")
    tok = os.path.join(stories, "tok512.bin")
    text = os.path.join(stories, "tinystories_valid_eval.txt")
    calib = os.path.join(stories, "tinystories_valid_calib.txt")
    work = tempfile.mkdtemp(prefix="calq-moe-fused-")
    failures = []

    def check(cond, what):
        print(("ok   " if cond else "FAIL ") + what, flush=True)
        if not cond:
            failures.append(what)

    for name, (block, gate, up, down) in CASES.items():
        src = os.path.join(fixtures, name)
        if not os.path.exists(os.path.join(src, "config.json")):
            ci = os.environ.get("CI", "") not in ("", "false", "0")
            print(f"families.moe_fused_layout: no fixture {src}" + ("" if ci else " (skipped)"))
            return 1 if ci else 0
        fused = os.path.join(work, name + "_fused")
        layers = fuse(src, fused, block, gate, up, down)
        ppl = {}
        for tag, model in (("per-expert", src), ("fused", fused)):
            out = os.path.join(work, f"{name}-{tag}.json")
            p = subprocess.run([calq, "-q", "eval", "--model", model, "--tokenizer", tok, "--data",
                                text, "--seqlen", "32", "--max-windows", "4", "--json", out],
                               capture_output=True, text=True)
            check(p.returncode == 0, f"{name} {tag}: calq eval runs {p.stderr.strip()[-200:]}")
            if p.returncode == 0:
                ev = json.load(open(out))
                ppl[tag] = ev["perplexity"][0]["ppl"] if "perplexity" in ev else ev["ppl"]
        if len(ppl) == 2:
            check(ppl["fused"] == ppl["per-expert"],
                  f"{name}: fused layout ({layers} sparse layers) ppl {ppl['fused']} == per-expert "
                  f"{ppl['per-expert']}")
        export = os.path.join(work, name + "_export")
        p = subprocess.run([calq, "-q", "run", os.path.join(os.path.dirname(__file__), "..", "..",
                                                            "configs", "gptq_w4g128.yaml"),
                            "--set", f"model.path={fused}", "--set", f"model.tokenizer={tok}",
                            "--set", f"calibration.data={calib}", "--set", "calibration.nsamples=2",
                            "--set", "calibration.seqlen=32", "--set", "eval.perplexity=[]",
                            "--set", "save.format=fake", "--set", f"save.path={export}/model",
                            "--out", export], capture_output=True, text=True)
        check(p.returncode == 0, f"{name}: GPTQ from the fused layout exports {p.stderr.strip()[-200:]}")
        if p.returncode == 0:
            names = set(load_file(os.path.join(export, "model", "model.safetensors")).keys())
            check(not any(n.endswith((".gate_up_proj", ".experts.down_proj")) for n in names) and
                  any(f".experts.0.{gate}.weight" in n for n in names),
                  f"{name}: the export writes per-expert tensors, no fused ones")
    shutil.rmtree(work)
    for f in failures:
        print("FAIL:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
