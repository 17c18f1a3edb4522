#!/usr/bin/env python3
"""ctest `checkpoint.verify`: `calq verify` (issue 20 part 3) on calq's own exports of
sotu-llama-6L and of the transformers-built Mixtral fixture, then on corrupted copies.

Exports (small calibration: 4 windows of 128 tokens, no evaluation), each must pass:
  gptq_sym, gptq_asym, gptq_actorder            GPTQ v1, 4-bit g128
  awq                                           AWQ GEMM, 4-bit g128 asymmetric
  ct_group, ct_channel, ct_asym, ct_actorder    compressed-tensors pack-quantized W4A16
  ct_w8a8                                       int-quantized W8A8, dynamic per-token
  ct_naive2, ct_naive3                          naive-quantized 2- and 3-bit
  fake                                          fake-quantized float16
  mixtral_gptq                                  GPTQ of every routed expert (mixtral_8x fixture)
and the float input model itself. Each run's report.json "certificate" must equal the
calq_certificate.json inside its export, and pass. With CALQ_VLLM_PYTHON set to a Python that
imports vLLM, vLLM's own config classes (vllm_config_check.py) must accept exactly the exports
whose certificate says vLLM loads them.

Corrupted copies, each must exit 1 with one stderr line "calq: error: ..." naming the tensor or
config field given below (the JSON of --json lists every failure, the first equal to the line).
The safetensors files are edited here with the standard library only (header JSON + raw bytes).

With the project venv given (VENV, as scripts/setup.sh makes it), compressed-tensors' own
QuantizationConfig validation must accept exactly the compressed-tensors exports whose certificate
says transformers loads them.

Writes <work>/verify_results.json.
Usage: verify_test.py CALQ SOURCE_DIR SHARED_DATA FIXTURES_DIR [VENV]
"""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

# ---------------------------------------------------------------- safetensors, standard library


def read_safetensors(path):
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", None)
    tensors = {}
    for name, info in header.items():
        b, e = info["data_offsets"]
        tensors[name] = [info["dtype"], list(info["shape"]), bytearray(data[b:e])]
    return meta, tensors


def write_safetensors(path, meta, tensors):
    header, blobs, offset = {}, [], 0
    if meta is not None:
        header["__metadata__"] = meta
    for name in sorted(tensors):
        dtype, shape, raw = tensors[name]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        blobs.append(bytes(raw))
        offset += len(raw)
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for b in blobs:
            f.write(b)


def shards(d):
    return sorted(f for f in os.listdir(d) if f.endswith(".safetensors"))


def edit_tensors(d, fn):
    """fn(tensors) edits the tensors of every shard in place (dict name -> [dtype, shape, bytes])."""
    for f in shards(d):
        meta, t = read_safetensors(os.path.join(d, f))
        fn(t)
        write_safetensors(os.path.join(d, f), meta, t)
    index = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(index):  # keep the index naming only tensors that remain
        names = {}
        for f in shards(d):
            for n in read_safetensors(os.path.join(d, f))[1]:
                names[n] = f
        j = json.load(open(index))
        j["weight_map"] = names
        json.dump(j, open(index, "w"), indent=2)


def all_names(d):
    out = []
    for f in shards(d):
        out += list(read_safetensors(os.path.join(d, f))[1])
    return sorted(out)


def edit_config(d, fn):
    p = os.path.join(d, "config.json")
    c = json.load(open(p))
    fn(c["quantization_config"])
    json.dump(c, open(p, "w"), indent=2)


# ---------------------------------------------------------------- corruptions


def first(names, *, contains="", suffix=""):
    for n in names:
        if contains in n and n.endswith(suffix):
            return n
    raise AssertionError(f"no tensor with {contains!r} ending {suffix!r}")


def drop_prefix(prefix):
    def fn(t):
        for n in [n for n in t if n.startswith(prefix + ".")]:
            del t[n]
    return fn


def qzeros_wrong_shape(d):
    name = first(all_names(d), contains="layers.1.self_attn.v_proj", suffix=".qzeros")

    def fn(t):
        if name in t:
            dtype, shape, raw = t[name]
            rows, cols = shape
            keep = bytearray()
            for r in range(rows):  # drop the last int32 column
                keep += raw[r * cols * 4:(r * cols + cols - 1) * 4]
            t[name] = [dtype, [rows, cols - 1], keep]
    edit_tensors(d, fn)
    return name


def scale_to_f32(d):
    name = first(all_names(d), contains="layers.0.mlp.up_proj", suffix=".scales")

    def fn(t):
        if name in t:
            dtype, shape, raw = t[name]
            vals = struct.unpack(f"<{len(raw) // 2}e", raw)
            t[name] = ["F32", shape, bytearray(struct.pack(f"<{len(vals)}f", *vals))]
    edit_tensors(d, fn)
    return name


def g_idx_out_of_range(d):
    name = first(all_names(d), contains="layers.3.mlp.gate_proj", suffix=".g_idx")

    def fn(t):
        if name in t:
            t[name][2][12:16] = struct.pack("<i", 99)
    edit_tensors(d, fn)
    return name


def nan_scale(d):
    name = first(all_names(d), contains="layers.4.self_attn.o_proj", suffix=".weight_scale")

    def fn(t):
        if name in t:
            assert t[name][0] == "F16", t[name][0]
            t[name][2][2:4] = struct.pack("<H", 0x7E00)  # float16 NaN
    edit_tensors(d, fn)
    return name


def missing_g_idx(d):
    name = first(all_names(d), contains="layers.2.self_attn.k_proj", suffix=".g_idx")
    edit_tensors(d, lambda t: t.pop(name, None))
    return name


def missing_linear(d):
    prefix = "model.layers.2.mlp.down_proj"
    edit_tensors(d, drop_prefix(prefix))
    return prefix


def missing_expert(d):
    q = first(all_names(d), contains=".experts.1.", suffix=".qweight")
    prefix = q[: -len(".qweight")]
    edit_tensors(d, drop_prefix(prefix))
    return prefix


def truncate(d):
    f = os.path.join(d, shards(d)[-1])
    size = os.path.getsize(f)
    with open(f, "r+b") as fh:
        fh.truncate(size - 4096)
    return shards(d)[-1]


def config_edit(field, fn):
    def apply(d):
        edit_config(d, fn)
        return field
    return apply


def ignore_quantized(d):
    def fn(qc):
        qc["ignore"] = qc.get("ignore", []) + ["model.layers.0.self_attn.q_proj"]
    edit_config(d, fn)
    return "quantization_config.ignore"


# (name, export it corrupts, corruption -> the string the error line must hold)
CORRUPTIONS = [
    ("missing_expert", "mixtral_gptq", missing_expert),
    ("qzeros_wrong_shape", "gptq_asym", qzeros_wrong_shape),
    ("bits_disagree_with_packing", "gptq_sym",
     config_edit("quantization_config.bits", lambda qc: qc.update(bits=8))),
    ("scale_wrong_dtype", "awq", scale_to_f32),
    ("ignore_names_quantized_layer", "ct_group", ignore_quantized),
    ("missing_g_idx_with_desc_act", "gptq_actorder", missing_g_idx),
    ("g_idx_out_of_range", "gptq_actorder", g_idx_out_of_range),
    ("nan_scale", "ct_group", nan_scale),
    ("missing_decoder_linear", "gptq_sym", missing_linear),
    ("truncated_safetensors", "awq", truncate),
    ("wrong_ct_format_string", "ct_channel",
     config_edit("quantization_config.format", lambda qc: qc.update(format="pack-quantised"))),
    ("group_size_not_dividing_in_features", "gptq_sym",
     config_edit("quantization_config.group_size", lambda qc: qc.update(group_size=96))),
    ("lm_head_declared_quantized", "gptq_asym",
     config_edit("quantization_config.lm_head", lambda qc: qc.update(lm_head=True))),
    ("ct_version_missing", "ct_asym",
     config_edit("quantization_config.version", lambda qc: qc.pop("version"))),
    ("awq_version_gemv", "awq",
     config_edit("quantization_config.version", lambda qc: qc.update(version="gemv"))),
]

# compressed-tensors' own validation of a quantization_config (run with the project venv's Python).
CT_VALIDATE = '''
import json, os, sys
qc = json.load(open(os.path.join(sys.argv[1], "config.json")))["quantization_config"]
out = {"accepted": False, "error": None}
try:
    from compressed_tensors.quantization import QuantizationConfig
    QuantizationConfig.model_validate(qc)
    out["accepted"] = True
except Exception as e:
    out["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
print(json.dumps(out))
'''

# ---------------------------------------------------------------- exports

SOTU_SETS = ["calibration.nsamples=4", "calibration.seqlen=128", "eval.perplexity=[]"]


def exports(src, data, fixtures):
    c = lambda name: os.path.join(src, "configs", name)
    gptq = c("sotu_gptq_w4g128.yaml")
    out = {
        "gptq_sym": (gptq, ["scheme.weights.sym=true"], "gptq"),
        "gptq_asym": (gptq, [], "gptq"),
        "gptq_actorder": (gptq, ["passes.0.gptq.act_order=true"], "gptq"),
        "awq": (c("sotu_awq_w4g128.yaml"), [], "awq"),
        "ct_group": (gptq, ["scheme.weights.sym=true"], "compressed-tensors"),
        "ct_channel": (gptq, ["scheme.weights.sym=true", "scheme.weights.group_size=-1"],
                       "compressed-tensors"),
        "ct_asym": (gptq, [], "compressed-tensors"),
        # compressed-tensors >= 0.19 stores act-order only with static groups (actorder
        # "weight"); calq refuses act-order g_idx for this format.
        "ct_actorder": (gptq, ["passes.0.gptq.act_order=true", "scheme.weights.sym=true",
                               "passes.0.gptq.static_groups=true"],
                        "compressed-tensors"),
        "ct_w8a8": (c("sotu_w8a8_naive.yaml"), ["scheme.activations.bmm_inputs=false"],
                    "compressed-tensors"),
        "ct_naive2": (c("sotu_rtn_w4g128.yaml"), ["scheme.weights.bits=2"], "compressed-tensors"),
        "ct_naive3": (c("sotu_rtn_w4g128.yaml"), ["scheme.weights.bits=3"], "compressed-tensors"),
        "fake": (c("sotu_rtn_w4g128.yaml"), [], "fake"),
    }
    model = os.path.join(fixtures, "mixtral_8x")
    stories = os.path.join(data, "stories260K")
    if os.path.exists(os.path.join(model, "config.json")):
        out["mixtral_gptq"] = (os.path.join(src, "configs", "gptq_w4g128.yaml"), [
            f"model.path={model}", f"model.tokenizer={os.path.join(stories, 'tok512.bin')}",
            f"calibration.data={os.path.join(stories, 'tinystories_valid_calib.txt')}",
            "calibration.seqlen=32", "model.dtype=float32", "calibration.moe=all_experts"],
            "gptq")
    return out


def main():
    calq, src, data, fixtures = sys.argv[1:5]
    venv = sys.argv[5] if len(sys.argv) > 5 else ""
    venv_python = os.path.join(venv, "bin", "python") if venv else ""
    if venv_python and not os.path.exists(venv_python):
        venv_python = ""  # no project venv: the compressed-tensors cross-check is skipped
    ci = os.environ.get("CI", "") not in ("", "false", "0")
    if not os.path.exists(os.path.join(data, "sotu-llama-6L", "config.json")):
        print("checkpoint.verify: no shared data" + ("" if ci else " (skipped)"))
        return 1 if ci else 0
    # Optional: a Python that imports vLLM (docs/formats.md §8.3: a throwaway venv with vllm --no-deps).
    vllm_python = os.environ.get("CALQ_VLLM_PYTHON", "")
    work = tempfile.mkdtemp(prefix="calq-verify-")
    failures, results = [], {"exports": {}, "corruptions": {}}

    def verify(d, tag):
        js = os.path.join(work, f"{tag}.certificate.json")
        p = subprocess.run([calq, "verify", d, "--json", js], capture_output=True, text=True)
        cert = json.load(open(js)) if os.path.exists(js) else None
        return p, cert

    # The float input model.
    p, cert = verify(os.path.join(data, "sotu-llama-6L"), "float")
    if p.returncode != 0:
        failures.append(f"float sotu-llama-6L: exit {p.returncode}: {p.stderr.strip()}")

    todo = exports(src, data, fixtures)
    if "mixtral_gptq" not in todo:
        msg = f"no mixtral_8x fixture under {fixtures} (ctest -R families.fixtures builds it)"
        if ci:
            failures.append(msg)
        else:
            print("checkpoint.verify: " + msg + "; the missing-expert case is skipped")
    for tag, (recipe, sets, fmt) in todo.items():
        out = os.path.join(work, "runs", tag)
        save = os.path.join(work, "exports", tag)
        extra = SOTU_SETS if tag != "mixtral_gptq" else ["calibration.nsamples=2", "eval.perplexity=[]"]
        argv = [calq, "-q", "run", recipe, "--out", out, "--set", f"save={{format: {fmt}, path: {save}}}"]
        for s in extra + sets:
            argv += ["--set", s]
        p = subprocess.run(argv, capture_output=True, text=True)
        if p.returncode != 0:
            failures.append(f"{tag}: calq run exit {p.returncode}: {p.stderr.strip()[-400:]}")
            continue
        report = json.load(open(os.path.join(out, "report.json")))
        inside = json.load(open(os.path.join(save, "calq_certificate.json")))
        if report.get("certificate") != inside:
            failures.append(f"{tag}: report.json certificate differs from {save}/calq_certificate.json")
        if not inside.get("passed"):
            failures.append(f"{tag}: the run's certificate fails: {inside.get('failures')[:2]}")
        p, cert = verify(save, tag)
        results["exports"][tag] = {
            "exit": p.returncode, "format": cert and cert["format"], "scheme": cert and cert["scheme"],
            "linears": cert and cert["linears"],
            "loaders": cert and [f"{v['loader']}: {'loads' if v['loads'] else 'no'} {v['via']}"
                                 for v in cert["loaders"]]}
        if p.returncode != 0:
            failures.append(f"{tag}: calq verify exit {p.returncode}: {p.stderr.strip()}")
        elif cert["linears"]["quantized"] + cert["linears"]["float"] != cert["linears"]["expected"]:
            failures.append(f"{tag}: linears do not add up: {cert['linears']}")
        if venv_python and cert and fmt == "compressed-tensors":
            # compressed-tensors' own config validation (the project venv's version) must accept
            # exactly the exports the certificate says transformers loads.
            v = subprocess.run([venv_python, "-c", CT_VALIDATE, save], capture_output=True, text=True)
            lines = v.stdout.strip().splitlines()
            got = json.loads(lines[-1]) if lines else None
            says = any(x["loads"] for x in cert["loaders"] if x["loader"] == "transformers")
            results["exports"][tag]["compressed_tensors_config"] = got
            if got is None or got["accepted"] != says:
                failures.append(f"{tag}: calq says transformers {'loads' if says else 'refuses'} it; "
                                f"compressed-tensors' QuantizationConfig: {got or v.stderr.strip()[-300:]}")
        if vllm_python and cert and fmt != "fake":
            # vLLM's own config classes must accept exactly the checkpoints calq says vLLM loads.
            v = subprocess.run([vllm_python, os.path.join(src, "tests", "checkpoint",
                                                          "vllm_config_check.py"), save],
                               capture_output=True, text=True)
            got = json.loads(v.stdout.strip().splitlines()[-1]) if v.stdout.strip() else None
            says = any(x["loads"] for x in cert["loaders"] if x["loader"] == "vllm")
            results["exports"][tag]["vllm_config_classes"] = got
            if got is None or got["accepted"] != says:
                failures.append(f"{tag}: calq says vLLM {'loads' if says else 'refuses'} it; vLLM's "
                                f"config classes: {got or v.stderr.strip()[-300:]}")
        vllm_says = cert and [x["via"] for x in cert["loaders"] if x["loader"] == "vllm" and x["loads"]]
        classes = results["exports"][tag].get("vllm_config_classes")
        print(f"  {tag:14s} verify exit {p.returncode}  {cert and cert['format']}, {cert and cert['scheme']}"
              f"; vLLM per certificate: {', '.join(vllm_says) if vllm_says else 'refuses'}"
              + (f"; compressed-tensors validation: "
                 f"{'accept' if results['exports'][tag]['compressed_tensors_config']['accepted'] else 'refuse'}"
                 if results["exports"][tag].get("compressed_tensors_config") else "")
              + (f"; vLLM config classes: {'accept' if classes['accepted'] else 'refuse'}"
                 f" ({classes['scheme'] or classes['class']}{': ' + classes['error'] if classes['error'] else ''})"
                 if classes else ""))

    for name, base, corrupt in CORRUPTIONS:
        src_dir = os.path.join(work, "exports", base)
        if not os.path.exists(src_dir):
            if base != "mixtral_gptq" or ci:
                failures.append(f"{name}: no {base} export to corrupt")
            continue
        d = os.path.join(work, "corrupt", name)
        shutil.copytree(src_dir, d)
        os.remove(os.path.join(d, "calq_certificate.json"))
        must_name = corrupt(d)
        p, cert = verify(d, "corrupt-" + name)
        lines = [l for l in p.stderr.splitlines() if l.strip()]
        line = lines[-1] if lines else ""
        ok = (p.returncode == 1 and len(lines) == 1 and line.startswith("calq: error: ")
              and must_name in line and cert is not None and not cert["passed"]
              and line.startswith("calq: error: " + cert["failures"][0]))
        results["corruptions"][name] = {"export": base, "exit": p.returncode, "line": line,
                                        "must_name": must_name,
                                        "failures": cert and len(cert["failures"])}
        print(f"  {name:36s} exit {p.returncode}  {line[:160]}")
        if not ok:
            failures.append(f"{name}: expected exit 1 and one line naming {must_name!r}; got exit "
                            f"{p.returncode}, stderr {p.stderr.strip()[:400]!r}")

    json.dump(results, open(os.path.join(work, "verify_results.json"), "w"), indent=2)
    for f in failures:
        print("FAIL: " + f)
    if not failures:
        shutil.rmtree(work, ignore_errors=True)
        print(f"checkpoint.verify: {len(results['exports'])} exports pass, "
              f"{len(results['corruptions'])} corruptions each fail with one line")
    else:
        print(f"work kept in {work}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
