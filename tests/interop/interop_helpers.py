"""Shared pieces of the interop suite (tests/interop): paths, calq runs, the token windows, the
perplexity protocol in Python, and the results record.

The protocol is calq's (core/eval/perplexity.h, the GPTQ protocol): the text's token stream with
one BOS cut into non-overlapping windows of SEQLEN, each window on its own, PPL = exp(mean NLL
over every predicted token), logits in float32, NLL summed in double.
"""
import json
import math
import os
import subprocess

import torch

from llama2c_tokenizer import Llama2cTokenizer

SEQLEN = 64
WINDOWS = 2
CALIB_SAMPLES = 2


class Env:
    """Where things are, from the environment ctest sets (tests/CMakeLists.txt)."""

    def __init__(self):
        self.calq = os.environ["CALQ_BIN"]
        self.fixtures = os.environ["CALQ_FAMILY_FIXTURES"]
        self.data = os.environ["CALQ_DATA"]
        self.source = os.environ["CALQ_SOURCE_DIR"]
        self.out = os.environ["CALQ_INTEROP_OUT"]
        stories = os.path.join(self.data, "stories260K")
        self.tok = os.path.join(stories, "tok512.bin")
        self.calib = os.path.join(stories, "tinystories_valid_calib.txt")
        self.text = os.path.join(stories, "tinystories_valid_eval.txt")


def run_calq(env, args, log_path):
    p = subprocess.run([env.calq, "-q", *args], capture_output=True, text=True)
    with open(log_path, "a") as f:
        f.write(" ".join(args) + "\n" + p.stdout + p.stderr + "\n")
    if p.returncode != 0:
        last = (p.stderr.strip().splitlines() or [""])[-1]
        raise RuntimeError(f"calq {args[0]} exit {p.returncode}: {last}")
    return p


def calq_export(env, fixture, recipe, overrides, out, logits=None):
    """calq run RECIPE on FIXTURE with the suite's tiny calibration and evaluation; returns
    (export dir, in-memory perplexity from report.json)."""
    model = os.path.join(env.fixtures, fixture)
    sets = [f"model.path={model}", f"model.tokenizer={env.tok}", f"calibration.data={env.calib}",
            f"calibration.nsamples={CALIB_SAMPLES}", f"calibration.seqlen={SEQLEN}",
            "model.dtype=float32",
            f"eval.perplexity=[{{data: {env.text}, seqlen: {SEQLEN}, max_windows: {WINDOWS}}}]",
            f"save.path={out}/model", *overrides]
    argv = ["run", os.path.join(env.source, "configs", recipe + ".yaml"), "--out", out]
    for s in sets:
        argv += ["--set", s]
    if logits:
        argv += ["--logits", logits]
    run_calq(env, argv, os.path.join(os.path.dirname(out), "calq.log"))
    report = json.load(open(os.path.join(out, "report.json")))
    return os.path.join(out, "model"), report["eval"]["perplexity"][0]["ppl"]


def calq_eval_logits(env, model_dir, out_prefix, adapter=None):
    """`calq eval --logits` of a directory: (ppl, input_ids [W, SEQLEN], logits float32)."""
    from safetensors.torch import load_file
    argv = ["eval", "--model", model_dir, "--tokenizer", env.tok, "--data", env.text,
            "--seqlen", str(SEQLEN), "--max-windows", str(WINDOWS), "--json", out_prefix + ".json",
            "--logits", out_prefix + ".safetensors"]
    if adapter:
        argv += ["--adapter", adapter]
    run_calq(env, argv, os.path.join(os.path.dirname(out_prefix), "calq.log"))
    ppl = json.load(open(out_prefix + ".json"))["perplexity"][0]["ppl"]
    t = load_file(out_prefix + ".safetensors")
    return ppl, t["input_ids"], t["logits"]


_WINDOWS = {}


def python_windows(env):
    """The first WINDOWS x SEQLEN tokens of the evaluation text by the Python tokenizer."""
    if "ids" not in _WINDOWS:
        tok = Llama2cTokenizer(env.tok, 512)
        text = open(env.text, encoding="utf-8").read()
        # A prefix long enough for the windows (TinyStories: ~4 bytes per token), cut at a line
        # end: the merges never cross "\n" + letter here, so the prefix's tokens are the text's.
        prefix = text[:WINDOWS * SEQLEN * 12]
        prefix = prefix[:prefix.rfind("\n")]
        ids = tok.encode(prefix)
        assert len(ids) >= WINDOWS * SEQLEN, "evaluation prefix too short"
        _WINDOWS["ids"] = torch.tensor(ids[:WINDOWS * SEQLEN]).view(WINDOWS, SEQLEN)
    return _WINDOWS["ids"]


def perplexity(logits, ids):
    """exp(mean NLL) of the next-token predictions, as core/eval/perplexity.cpp."""
    lp = torch.log_softmax(logits[:, :-1].float(), -1)
    nll = -lp.gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1).double()
    return math.exp(nll.sum().item() / nll.numel())


def forward_logits(model, ids):
    with torch.no_grad():
        out = model(input_ids=ids)
    return out.logits.float()


class Results:
    """family x format -> record, written to CALQ_INTEROP_OUT/export_loaders.json at the end."""

    def __init__(self, path, meta):
        self.path = path
        self.doc = {"meta": meta, "cases": {}}

    def add(self, fixture, fmt, record):
        self.doc["cases"][f"{fixture}/{fmt}"] = dict(record, fixture=fixture, format=fmt)

    def write(self):
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.doc, f, indent=1, sort_keys=True)
        os.replace(tmp, self.path)


def ct_unpack_to_float_checkpoint(model_dir, out_dir):
    """The "unpacked" path for compressed-tensors: every quantized module's tensors decompressed
    by compressed-tensors' own per-module compressor (BaseCompressor registry, `decompress(state
    dict, scheme)`: compressors/pack_quantized/base.py, naive_quantized/base.py), written with
    the other tensors as a plain float checkpoint (quantization_config removed) for transformers
    to load as it loads the fixtures. Returns the dense weights' dtypes."""
    import shutil
    from compressed_tensors.compressors import BaseCompressor
    from compressed_tensors.quantization import QuantizationConfig
    from safetensors.torch import load_file, save_file
    config = json.load(open(os.path.join(model_dir, "config.json")))
    qc = QuantizationConfig.model_validate(config["quantization_config"])
    (group,) = qc.config_groups.values()
    compressor = BaseCompressor.get_value_from_registry(qc.format)
    tensors = {}
    for f in sorted(os.listdir(model_dir)):
        if f.endswith(".safetensors"):
            tensors.update(load_file(os.path.join(model_dir, f)))
    prefixes = {k.rsplit(".", 1)[0] for k in tensors if k.endswith(".weight_scale")}
    dense, dtypes = {}, set()
    for name, t in tensors.items():
        if name.rsplit(".", 1)[0] not in prefixes:
            dense[name] = t
    for p in sorted(prefixes):
        local = {k[len(p) + 1:]: v for k, v in tensors.items() if k.startswith(p + ".")}
        # The float16 scale widened first (exactly): the library then computes s * (q - z) in
        # float32, exact for these small integers, instead of rounding each weight to float16,
        # which on an MoE can flip a near-tied top-k expert choice (qwen3_moe did) and hide
        # the layout check behind a routing change. The unpacking itself is the library's.
        local["weight_scale"] = local["weight_scale"].float()
        out = compressor.decompress(local, group)
        dtypes.add(str(out["weight"].dtype).replace("torch.", ""))
        dense[p + ".weight"] = out["weight"].float().contiguous()
        for k, v in out.items():  # a bias, if any
            if k not in ("weight", "weight_scale", "weight_zero_point", "weight_shape", "weight_g_idx"):
                dense[p + "." + k] = v
    write_float_checkpoint(model_dir, out_dir, dense, config)
    return sorted(dtypes)


def gptqmodel_unpack_to_float_checkpoint(model_dir, out_dir):
    """The "unpacked" path for GPTQ v1 and AWQ GEMM exports that transformers cannot load (MoE
    experts, which transformers 5 holds fused): every quantized module dequantized by GPTQModel's
    own code — for GPTQ its TorchLinear (nn_modules/qlinear/torch.py) after its v1 -> v2 zero-point
    conversion (utils/model.py convert_gptq_v1_to_v2_format_module), as GPTQModel does when it
    loads a v1 checkpoint; for AWQ its dequantize_gemm (quantization/awq/utils/packing_utils.py)
    — written with the other tensors as a plain float checkpoint. Returns the dense weights'
    dtypes (float32: the scales are widened before the library dequantizes)."""
    import shutil
    import torch
    from safetensors.torch import load_file, save_file
    config = json.load(open(os.path.join(model_dir, "config.json")))
    qc = config["quantization_config"]
    tensors = {}
    for f in sorted(os.listdir(model_dir)):
        if f.endswith(".safetensors"):
            tensors.update(load_file(os.path.join(model_dir, f)))
    prefixes = sorted({k[:-len(".qweight")] for k in tensors if k.endswith(".qweight")})
    packed = {p + "." + s for p in prefixes for s in ("qweight", "qzeros", "scales", "g_idx")}
    dense = {k: v for k, v in tensors.items() if k not in packed}
    bits = qc["bits"]
    group = qc.get("group_size", qc.get("q_group_size"))
    dtypes = set()
    for p in prefixes:
        qweight, qzeros, scales = (tensors[p + s] for s in (".qweight", ".qzeros", ".scales"))
        if qc["quant_method"] == "gptq":
            from gptqmodel.nn_modules.qlinear.torch import TorchLinear
            from gptqmodel.utils.model import convert_gptq_v1_to_v2_format_module
            in_f, out_f = qweight.shape[0] * 32 // bits, qweight.shape[1]
            m = TorchLinear(bits=bits, group_size=group, sym=qc["sym"], desc_act=qc["desc_act"],
                            in_features=in_f, out_features=out_f, bias=False)
            with torch.no_grad():
                m.qweight.copy_(qweight)
                m.qzeros.copy_(qzeros)
                m.scales.copy_(scales)
                m.g_idx.copy_(tensors[p + ".g_idx"])
            if qc.get("checkpoint_format", "gptq") == "gptq":
                convert_gptq_v1_to_v2_format_module(m, bits=bits, pack_dtype=torch.int32)
            # The float16 scales widened first (exactly), as for compressed-tensors above: the
            # library's s * (q - z) then comes out in float32 instead of rounded to float16,
            # which on an MoE can flip a near-tied top-k expert choice.
            m.scales = m.scales.float()
            m.eval()
            w = m.dequantize_weight()  # [in, out]
        else:
            from gptqmodel.quantization.awq.utils.packing_utils import dequantize_gemm
            w = dequantize_gemm(qweight, qzeros, scales.float(), bits, group)  # [in, out]
        dtypes.add(str(w.dtype).replace("torch.", ""))
        dense[p + ".weight"] = w.t().float().contiguous()
    write_float_checkpoint(model_dir, out_dir, dense, config)
    return sorted(dtypes)


def write_float_checkpoint(model_dir, out_dir, dense, config):
    """The unpacked paths' output: dense tensors as model.safetensors and model_dir's config
    without its quantization_config, float32, for transformers to load as a plain model."""
    import shutil
    from safetensors.torch import save_file
    os.makedirs(out_dir, exist_ok=True)
    save_file(dense, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
    del config["quantization_config"]
    config["dtype"] = "float32"
    json.dump(config, open(os.path.join(out_dir, "config.json"), "w"), indent=1)
    for f in ("generation_config.json",):
        if os.path.exists(os.path.join(model_dir, f)):
            shutil.copy(os.path.join(model_dir, f), out_dir)
