#!/usr/bin/env python3
"""ctest `families.passes`: on every transformers-built family fixture calq loads, the generic
recipes run and export, and `calq eval` of each export equals the in-memory perplexity.

  GPTQ W4 g128 (configs/gptq_w4g128.yaml)       -> gptq, and fake
  AWQ W4 g128 (configs/awq_w4g128.yaml)         -> awq
  SmoothQuant W8A8 (configs/smoothquant_w8a8.yaml, bmm inputs off) -> compressed-tensors

Every export must keep the checkpoint's HF module names: the decoder layers' tensors of the
export live under exactly the module prefixes the fixture's checkpoint has (Phi-3's fused
qkv_proj and gate_up_proj stay fused, nothing is split or renamed).

Fixtures calq refuses at load are listed, not failed (tests/families/family_fixtures_test.cpp
holds them to a one-line refusal). Calibration: 8 windows of TinyStories through the llama2.c
tok512 tokenizer (the fixtures' vocabulary is 512); evaluation on 4 windows of the held-out
half. Writes <fixtures>/calq_passes.json.

Usage: family_passes_test.py CALQ FIXTURES_DIR SHARED_DATA SOURCE_DIR
"""
import json
import os
import re
import struct
import subprocess
import sys
import tempfile

CASES = [  # name, recipe, overrides
    ("gptq_w4g128->gptq", "gptq_w4g128", ["save.format=gptq"]),
    ("gptq_w4g128->fake", "gptq_w4g128", ["save.format=fake"]),
    ("awq_w4g128->awq", "awq_w4g128", ["save.format=awq"]),
    ("smoothquant_w8a8->compressed-tensors", "smoothquant_w8a8",
     ["save.format=compressed-tensors", "scheme.activations.bmm_inputs=false"]),
]
# Same windows, same arithmetic: an export stores exactly the codes, scales and float tensors the
# in-memory model computes with (in the checkpoint's dtype), so the perplexities are equal; every
# case measured 0 difference. 1e-6 relative is print-rounding room, nothing more.
REL_TOL = 1e-6
# A format that cannot hold a shape must say so naming the tensor (group 128 on a 96- or 64-wide
# o_proj, say): that is the expected outcome, recorded, not a failure.
REFUSAL = "expected shapes the format packs"


def group_misfit(line):
    """A refusal counts only when the named tensor's in_features really is no multiple of 128."""
    m = re.search(r"\[(\d+) x (\d+)\]: group size (\d+) does not divide", line)
    return bool(m) and int(m.group(2)) % int(m.group(3)) != 0


def safetensors_bytes(directory):
    """name -> (dtype, shape, raw bytes) of every tensor in a directory's .safetensors files."""
    out = {}
    for f in sorted(os.listdir(directory)):
        if not (f.startswith("model") and f.endswith(".safetensors")):
            continue
        with open(os.path.join(directory, f), "rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(n))
            base = 8 + n
            for name, info in header.items():
                if name == "__metadata__":
                    continue
                begin, end = info["data_offsets"]
                fh.seek(base + begin)
                out[name] = (info["dtype"], info["shape"], fh.read(end - begin))
    return out


def carried_over(model_dir, export_dir):
    """Tensors outside the language model (a multimodal checkpoint's vision tower) must be in the
    export byte for byte; returns the names that are not, [] when all are (or there are none)."""
    config = json.load(open(os.path.join(model_dir, "config.json")))
    if "text_config" not in config:
        return []
    src, dst = safetensors_bytes(model_dir), safetensors_bytes(export_dir)
    foreign = [n for n in src if not n.startswith("language_model.")]
    return ["none"] if not foreign else [n for n in foreign if dst.get(n) != src[n]]
def tensor_names(model_dir):
    """Tensor names of a safetensors checkpoint directory (one file or an index of shards)."""
    index = os.path.join(model_dir, "model.safetensors.index.json")
    files = sorted(set(json.load(open(index))["weight_map"].values())) if os.path.exists(index) \
        else ["model.safetensors"]
    names = []
    for name in files:
        with open(os.path.join(model_dir, name), "rb") as f:
            size = struct.unpack("<Q", f.read(8))[0]
            names += [k for k in json.loads(f.read(size)) if k != "__metadata__"]
    return names


def layer_modules(names):
    """The module prefixes of the decoder layers' tensors ("model.layers.0.self_attn.qkv_proj")."""
    return {n.rsplit(".", 1)[0] for n in names if n.startswith("model.layers.")}


def run(argv):
    p = subprocess.run(argv, capture_output=True, text=True)
    return p.returncode, (p.stderr.strip().splitlines() or [""])[-1]


def main():
    calq, fixtures, data, src = sys.argv[1:5]
    manifest_path = os.path.join(fixtures, "manifest.json")
    if not os.path.exists(manifest_path):
        ci = os.environ.get("CI", "") not in ("", "false", "0")
        print(f"families.passes: no fixtures at {fixtures}" + ("" if ci else " (skipped)"))
        return 1 if ci else 0
    manifest = json.load(open(manifest_path))
    stories = os.path.join(data, "stories260K")
    tok = os.path.join(stories, "tok512.bin")
    calib = os.path.join(stories, "tinystories_valid_calib.txt")
    text = os.path.join(stories, "tinystories_valid_eval.txt")
    results, failures = {}, []
    work = tempfile.mkdtemp(prefix="calq-family-passes-")
    for name in manifest["fixtures"]:
        model = os.path.join(fixtures, name)
        rc, line = run([calq, "-q", "inspect", model])
        if rc != 0:
            results[name] = {"refused": line}
            continue
        positions = json.load(open(os.path.join(model, "config.json"))).get("max_position_embeddings", 64)
        seqlen = min(64, positions)
        results[name] = {}
        for case, recipe, overrides in CASES:
            out = os.path.join(work, name, case.replace(">", ""))
            sets = ["--set", f"model.path={model}", "--set", f"model.tokenizer={tok}",
                    "--set", f"calibration.data={calib}", "--set", "calibration.nsamples=8",
                    "--set", f"calibration.seqlen={seqlen}", "--set", "model.dtype=float32",
                    "--set", f"eval.perplexity=[{{data: {text}, seqlen: {seqlen}, max_windows: 4}}]",
                    "--set", f"save.path={out}/model"]
            for o in overrides:
                sets += ["--set", o]
            rc, line = run([calq, "-q", "run", os.path.join(src, "configs", recipe + ".yaml"), *sets,
                            "--out", out])
            if rc == 1 and REFUSAL in line and "model.layers." in line and group_misfit(line):
                results[name][case] = {"refused": line}
                print(f"ok   {name:18} {case:38} refused: {line.split('save.format ', 1)[-1]}")
                continue
            if rc != 0:
                results[name][case] = {"error": line}
                failures.append(f"{name} {case}: run exit {rc}: {line}")
                continue
            want, got = layer_modules(tensor_names(model)), layer_modules(tensor_names(f"{out}/model"))
            if got != want:
                results[name][case] = {"error": "module names differ"}
                failures.append(f"{name} {case}: export's layer modules differ from the checkpoint's: "
                                f"new {sorted(got - want)[:4]}, missing {sorted(want - got)[:4]}")
                continue
            report = json.load(open(os.path.join(out, "report.json")))
            mem = report["eval"]["perplexity"][0]["ppl"]
            differ = carried_over(model, f"{out}/model")
            if differ:
                results[name][case] = {"error": f"not carried over: {differ[:3]}"}
                failures.append(f"{name} {case}: tensors outside the language model not carried "
                                f"over byte for byte: {differ[:3]}")
                continue
            rc, line = run([calq, "-q", "eval", "--model", f"{out}/model", "--tokenizer", tok,
                            "--data", text, "--seqlen", str(seqlen), "--max-windows", "4",
                            "--json", f"{out}/eval.json"])
            if rc != 0:
                results[name][case] = {"ppl_in_memory": mem, "error": line}
                failures.append(f"{name} {case}: eval of the export exit {rc}: {line}")
                continue
            ev = json.load(open(f"{out}/eval.json"))
            exp = ev["perplexity"][0]["ppl"] if "perplexity" in ev else ev["ppl"]
            rel = abs(exp - mem) / mem
            results[name][case] = {"ppl_in_memory": mem, "ppl_exported": exp, "rel_diff": rel}
            status = "ok  " if rel <= REL_TOL else "FAIL"
            print(f"{status} {name:18} {case:38} in-memory {mem:10.4f} exported {exp:10.4f} "
                  f"rel {rel:.1e}", flush=True)
            if rel > REL_TOL:
                failures.append(f"{name} {case}: exported ppl {exp} vs in-memory {mem}")
    tmp = os.path.join(fixtures, ".calq_passes.json.tmp")
    with open(tmp, "w") as f:
        json.dump(results, f, indent=1)
    os.rename(tmp, os.path.join(fixtures, "calq_passes.json"))
    subprocess.run(["rm", "-rf", work])
    for name, r in results.items():
        if "refused" in r:
            print(f"not run {name}: {r['refused']}")
    for f in failures:
        print("FAIL:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
