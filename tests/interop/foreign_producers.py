"""Checkpoints written by other tools, and the two perplexities that must agree on them.

Shared by tests/interop/test_foreign_checkpoints.py (issue 20 part 2: calq reads what other
tools write) and bench/peer_gptq.py (part 4: peers on the same windows). Everything runs on the
CPU and offline: calibration and evaluation windows are token ids cut from local text with the
model's own sentencepiece tokenizer, handed to each tool in memory.

  model makers      sotu-llama-6L (a trained 6.8M Llama, fp16 on disk) and a tiny Qwen3 built
                    here from a seed (vocab 4096 so the same tokenizer and text drive it)
  producers         llm-compressor oneshot, AutoRound (one tuning, several export formats),
                    GPTQModel
  perplexities      transformers on the directory (the library the format needs, loaded by
                    from_pretrained) and `calq eval` on the same directory, text, seqlen, windows
"""
import json
import os
import shutil
import subprocess
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing from a hub, ever
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED = os.environ.get("CALQ_DATA", os.path.join(ROOT, "data"))
SOTU = os.path.join(SHARED, "sotu-llama-6L")
BUILD = os.environ.get("CALQ_BUILD_DIR", os.path.join(ROOT, "build"))
CALQ = os.environ.get("CALQ_BIN", os.path.join(BUILD, "calq"))

# The evaluation protocol both sides follow (calq's core/eval/perplexity.cpp, the GPTQ one):
# BOS + the whole text, cut into non-overlapping windows of SEQLEN, every position after the
# first of a window predicted, mean NLL over all of them, exp.
SEQLEN = 128
EVAL_WINDOWS = 16
EVAL_CHARS = 60000  # of sotu_valid.txt: enough for EVAL_WINDOWS windows of SEQLEN
CALIB_SEQLEN = 128


def versions():
    """Versions of the libraries in play, for the results file."""
    import importlib.metadata as md
    out = {}
    for name in ("torch", "transformers", "compressed-tensors", "llmcompressor", "auto-round",
                 "gptqmodel", "datasets", "accelerate"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def sp_tokenizer():
    import sentencepiece as spm
    return spm.SentencePieceProcessor(model_file=os.path.join(SOTU, "tokenizer.model"))


def eval_text(work):
    """A prefix of sotu_valid.txt written to work/eval.txt: both sides read this file."""
    path = os.path.join(work, "eval.txt")
    if not os.path.exists(path):
        with open(os.path.join(SOTU, "sotu_valid.txt"), encoding="utf-8") as f:
            text = f.read()[:EVAL_CHARS]
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    return path


def eval_tokens(text_path):
    """BOS + the file's tokens, as calq's perplexity_tokens (add_bos=true)."""
    with open(text_path, encoding="utf-8") as f:
        return [1] + sp_tokenizer().encode(f.read())


def calib_windows(n, seqlen=CALIB_SEQLEN, offset_chars=0):
    """n windows of seqlen token ids from sotu_calib.txt (BOS first, then the text's tokens, cut
    in order): the same ids go to every tool and to calq (via calib_text)."""
    with open(os.path.join(SOTU, "sotu_calib.txt"), encoding="utf-8") as f:
        text = f.read()[offset_chars:offset_chars + 40 * n * seqlen]
    ids = [1] + sp_tokenizer().encode(text)
    assert len(ids) >= n * seqlen, f"calibration text too short for {n} x {seqlen}"
    return [ids[i * seqlen:(i + 1) * seqlen] for i in range(n)]


# ----------------------------------------------------------------------------- models

def copy_tokenizer(dst):
    for f in ("tokenizer.model", "tokenizer_config.json"):
        shutil.copy(os.path.join(SOTU, f), dst)


def make_qwen3(dst, seed=20):
    """A tiny random Qwen3 (q_norm/k_norm, 2 layers) in the sotu tokenizer's vocabulary, written
    with transformers' own class. Widened init (0.1) so a misread weight moves perplexity far
    more than rounding does; hidden 256 / intermediate 768 so group size 128 divides every
    linear. fp32 on disk."""
    if os.path.exists(os.path.join(dst, "config.json")):
        return dst
    import torch
    import transformers
    torch.manual_seed(seed)
    cfg = transformers.Qwen3Config(vocab_size=4096, hidden_size=256, intermediate_size=768,
                                   num_hidden_layers=2, num_attention_heads=8,
                                   num_key_value_heads=4, head_dim=32, max_position_embeddings=512,
                                   initializer_range=0.1, rms_norm_eps=1e-6,
                                   tie_word_embeddings=False, bos_token_id=1, eos_token_id=2,
                                   pad_token_id=0)
    model = transformers.Qwen3ForCausalLM(cfg).eval()
    os.makedirs(dst, exist_ok=True)
    model.save_pretrained(dst)
    copy_tokenizer(dst)
    return dst


MODELS = {"sotu-llama-6L": lambda work: SOTU,
          "qwen3-tiny": lambda work: make_qwen3(os.path.join(work, "qwen3-tiny"))}


def load_fp32(model_dir):
    import torch
    import transformers
    return transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32,
                                                             device_map="cpu").eval()


def load_dtype(model_dir, dtype):
    import torch
    import transformers
    return transformers.AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=getattr(torch, dtype), device_map="cpu").eval()


def hf_tokenizer(model_dir):
    import transformers
    return transformers.AutoTokenizer.from_pretrained(model_dir)


def finish_dir(out, model_dir):
    """A produced directory needs the tokenizer calq reads (tokenizer.model)."""
    for f in ("tokenizer.model",):
        if not os.path.exists(os.path.join(out, f)):
            shutil.copy(os.path.join(model_dir, f), out)


# ----------------------------------------------------------------------------- producers

def llmc_oneshot(model_dir, out, recipe, windows, model=None):
    """llm-compressor's oneshot on in-memory tokenized windows; saved compressed-tensors.
    Returns wall seconds of oneshot itself (model loading and saving excluded)."""
    from datasets import Dataset
    from llmcompressor import oneshot
    model = model if model is not None else load_fp32(model_dir)
    ds = Dataset.from_dict({"input_ids": windows,
                            "attention_mask": [[1] * len(w) for w in windows]})
    # oneshot insists on a processor whenever a dataset is given, although these windows are
    # already token ids; calq synth's tokenizer.json is not one transformers loads, so the sotu
    # tokenizer stands in there (it tokenizes nothing).
    own = os.path.exists(os.path.join(model_dir, "tokenizer_config.json"))
    processor = hf_tokenizer(model_dir if own else SOTU)
    t = time.perf_counter()
    oneshot(model=model, dataset=ds, recipe=recipe, processor=processor,
            num_calibration_samples=len(windows),
            max_seq_length=len(windows[0]), shuffle_calibration_samples=False,
            pipeline="sequential")
    seconds = time.perf_counter() - t
    model.save_pretrained(out, save_compressed=True)
    finish_dir(out, model_dir)
    return seconds


def llmc_recipe(kind):
    from llmcompressor.modifiers.quantization import GPTQModifier
    from llmcompressor.modifiers.smoothquant import SmoothQuantModifier
    if kind == "gptq_w4a16":
        return [GPTQModifier(scheme="W4A16", targets="Linear", ignore=["lm_head"])]
    if kind == "smoothquant_gptq_w8a8":
        return [SmoothQuantModifier(smoothing_strength=0.8),
                GPTQModifier(scheme="W8A8", targets="Linear", ignore=["lm_head"])]
    raise ValueError(kind)


AUTOROUND_FORMATS = ("auto_gptq", "auto_round", "auto_awq")


def autoround(model_dir, out, windows, sym=True, iters=2, bits=4, group_size=128,
              formats=AUTOROUND_FORMATS):
    """One AutoRound tuning on the CPU, exported in each format; returns {format: directory}.
    iters=0 is AutoRound's RTN baseline."""
    import torch
    from auto_round import AutoRound
    model = load_fp32(model_dir)
    data = [{"input_ids": torch.tensor([w])} for w in windows]
    ar = AutoRound(model, hf_tokenizer(model_dir), bits=bits, group_size=group_size, sym=sym,
                   iters=iters, nsamples=len(windows), seqlen=len(windows[0]), dataset=data,
                   device_map="cpu", batch_size=min(4, len(windows)), seed=42)
    t = time.perf_counter()
    _, dirs = ar.quantize_and_save(out, format=",".join(formats))
    seconds = time.perf_counter() - t
    # auto-round names the directories itself (<out>/<model>-w4g128/<format>): map them back.
    result = {}
    for fmt in formats:
        tag = {"auto_gptq": "auto-gptq", "auto_round": "auto-round", "auto_awq": "auto-awq"}[fmt]
        match = [d for d in dirs if os.path.basename(d).startswith(tag)]
        assert len(match) == 1, f"AutoRound wrote {dirs}; expected one directory for {fmt}"
        finish_dir(match[0], model_dir)
        result[fmt] = match[0]
    return result, seconds


def autoround_each(model_dir, out, windows, sym=True, iters=2, formats=AUTOROUND_FORMATS):
    """One AutoRound tuning exported in every format by one quantize_and_save (AutoRound keeps
    the first format it saved with, so formats cannot be saved one call each). An export that
    fails stops the ones after it: put the fragile ones last. Each directory is identified by
    its own quantization_config. Returns ({format: directory}, {format: error text})."""
    import traceback
    import torch
    from auto_round import AutoRound
    model = load_fp32(model_dir)
    data = [{"input_ids": torch.tensor([w])} for w in windows]
    ar = AutoRound(model, hf_tokenizer(model_dir), bits=4, group_size=128, sym=sym, iters=iters,
                   nsamples=len(windows), seqlen=len(windows[0]), dataset=data,
                   device_map="cpu", batch_size=min(4, len(windows)), seed=42)
    error = None
    try:
        ar.quantize_and_save(out, format=",".join(formats))
    except Exception:  # noqa: BLE001 — the caller records it as the tool's gap
        error = traceback.format_exc(limit=4)
    dirs = {}
    for root, _, files in os.walk(out):
        if "config.json" not in files or "model.safetensors" not in files:
            continue
        q = json.load(open(os.path.join(root, "config.json"))).get("quantization_config", {})
        method, packing = q.get("quant_method"), q.get("packing_format", "")
        fmt = {"gptq": "auto_gptq", "awq": "auto_awq"}.get(method)
        if method == "auto-round":
            fmt = packing if packing in formats else "auto_round"
        if fmt in formats:
            finish_dir(root, model_dir)
            dirs[fmt] = root
    errors = {f: error or "not written" for f in formats if f not in dirs}
    return dirs, errors


def llmc_fp8_dynamic(model_dir, out):
    """llm-compressor's FP8_DYNAMIC scheme (no calibration): float8 weights, a layout calq does
    not read — the case for calq's one-line refusal."""
    from llmcompressor import oneshot
    from llmcompressor.modifiers.quantization import QuantizationModifier
    model = load_fp32(model_dir)
    oneshot(model=model, recipe=[QuantizationModifier(targets="Linear", scheme="FP8_DYNAMIC",
                                                      ignore=["lm_head"])])
    model.save_pretrained(out, save_compressed=True)
    finish_dir(out, model_dir)


def gptqmodel_quantize(model_dir, out, windows, sym=True, group_size=128, dtype=None, **config):
    """GPTQModel's own GPTQ on the CPU (its quantize() runs wherever the model is). dtype: the
    compute dtype's name (GPTQModel's own choice on the CPU is bfloat16); config: more
    QuantizeConfig fields (e.g. damp_percent). Returns the seconds of quantize() alone."""
    import gptqmodel
    from gptqmodel import GPTQModel, QuantizeConfig
    # GPTQModel 7.6 gives its CPU pool (cpu_count + 1) // 2 workers but asks 2 of them for its
    # model loader: on a 2-core machine that raises "Virtual pool 'model_loader:cpu' requests 2
    # workers but parent 'cpu' only has 1" (gptqmodel/__init__.py _build_device_thread_pool).
    # Two CPU workers, before the pool is first built, let it load.
    if (os.cpu_count() or 1) < 4:
        gptqmodel._default_cpu_workers = lambda: 2
    cfg = QuantizeConfig(bits=4, group_size=group_size, sym=sym, desc_act=False, **config)
    import torch
    # a torch.dtype: GPTQModel's loader takes any other value (a name too) for "auto"
    model = GPTQModel.load(model_dir, cfg, device="cpu",
                           **({"dtype": getattr(torch, dtype)} if dtype else {}))
    data = [{"input_ids": w, "attention_mask": [1] * len(w)} for w in windows]
    t = time.perf_counter()
    model.quantize(data, batch_size=1)
    seconds = time.perf_counter() - t
    model.save(out)
    finish_dir(out, model_dir)
    return seconds


# ----------------------------------------------------------------------------- perplexities

def hf_perplexity(model_dir, tokens, seqlen=SEQLEN, max_windows=EVAL_WINDOWS, model=None):
    """transformers' perplexity on the directory under calq's protocol (see SEQLEN): fp32
    compute, the quantized weights as the format's library loads them."""
    import torch
    model = model if model is not None else load_fp32(model_dir)
    n = min(len(tokens) // seqlen, max_windows)
    ids = torch.tensor(tokens[:n * seqlen], dtype=torch.long).view(n, seqlen)
    nll = 0.0
    with torch.no_grad():
        for w in range(n):
            logits = model(ids[w:w + 1]).logits.float()
            lp = torch.log_softmax(logits[0, :-1], dim=-1)
            nll += -lp.gather(-1, ids[w, 1:].unsqueeze(-1)).double().sum().item()
    return float(torch.exp(torch.tensor(nll / (n * (seqlen - 1)), dtype=torch.float64)))


class Int8GridAbsmax127:
    """Within the block, compressed-tensors' dynamic symmetric int8 activations use calq's (and
    vLLM's int8 kernel's) scale amax / 127 instead of its own amax / 127.5 (bit range 255 / 2,
    compressed_tensors/quantization/utils/helpers.py calculate_qparams). Only the scale changes;
    transformers and compressed-tensors do everything else."""

    def __enter__(self):
        import compressed_tensors.quantization.lifecycle.forward as ct_forward
        self.mod, self.orig = ct_forward, ct_forward.compute_dynamic_scales_and_zp

        def patched(value, args, module, global_scale=None):
            scale, zero = self.orig(value=value, args=args, module=module,
                                    global_scale=global_scale)
            if args.symmetric and args.num_bits == 8 and args.type == "int":
                scale = scale * (127.5 / 127.0)
            return scale, zero

        ct_forward.compute_dynamic_scales_and_zp = patched
        return self

    def __exit__(self, *exc):
        self.mod.compute_dynamic_scales_and_zp = self.orig


def calq_eval(model_dir, text_path, work, seqlen=SEQLEN, max_windows=EVAL_WINDOWS):
    """`calq eval` on the directory: (ppl or None, tokens, stderr)."""
    tag = os.path.relpath(os.path.abspath(model_dir), os.path.abspath(work)).replace(os.sep, "_")
    out = os.path.join(work, "eval-" + tag.replace("..", "up") + ".json")
    if os.path.exists(out):
        os.remove(out)
    p = subprocess.run([CALQ, "-q", "eval", "--model", model_dir, "--data", text_path,
                        "--seqlen", str(seqlen), "--max-windows", str(max_windows),
                        "--batch-size", "4", "--json", out], capture_output=True, text=True)
    if p.returncode != 0:
        return None, None, p.stderr.strip()
    r = json.load(open(out))["perplexity"][0]
    return r["ppl"], r["tokens"], p.stderr.strip()


def calq_inspect(model_dir):
    """`calq inspect --json` on the directory: (doc or None, stderr)."""
    p = subprocess.run([CALQ, "inspect", "--json", model_dir], capture_output=True, text=True)
    if p.returncode != 0:
        return None, p.stderr.strip()
    return json.loads(p.stdout), p.stderr.strip()
