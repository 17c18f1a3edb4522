#!/usr/bin/env python3
"""Writes a tiny `calq synth` model of every synth family and records transformers' logits on it,
so tests/families/synth_families_test.cpp can hold calq's forward to transformers' (issue 19
part 6: a synth model is a checkpoint both load the same way).

Each fixture is a `calq synth` directory plus, as in make_hf_fixtures.py,
  expected.safetensors   input_ids (int64 [2, 16]) and logits (float32)
  info.json              the synth flags, transformers' class, loss
and <out>/manifest.json lists them. Checked here, before any logits are written (each a reason
for the C++ test to fail on a missing fixture rather than compare garbage):
  - transformers loads every tensor synth wrote and finds none missing (nothing random-initialised);
  - transformers' config class reads the family's fields (model class, rope type, layer types);
  - stored norm gains sit around the family's identity: 1 for w ⊙ x̂, 0 for Gemma's (1 + w) ⊙ x̂.

Usage (the venv scripts/setup.sh makes): .venv/bin/python make_synth_fixtures.py CALQ OUT
"""
import json
import os
import shutil
import subprocess
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

# Weights widened to std 0.2 (as make_hf_fixtures.py's initializer_range) so attention is sharp
# and a rope, window or norm read differently by the two moves logits well past float32 noise.
# Outlier gains x4, not synth's default x20: at x20 transformers' own float32 logits are 6e-5 to
# 8e-5 from its float64 ones (measured), too close to the 1e-4 calq must meet; at x4, 1.6e-5.
TINY = ["--hidden", "64", "--intermediate", "160", "--heads", "4", "--kv-heads", "2",
        "--weight-std", "0.2", "--outlier-scale", "4"]
# A fixture is usable only when transformers' float32 run is this close to its float64 run: the
# C++ test holds calq to 1e-4, so float32 noise itself must stay well under it.
MAX_FP32_NOISE = 2.5e-5
LLAMA3_ROPE = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
# name -> (synth flags, transformers class, checks on the loaded config). One row per synth family
# and per behaviour its row sets (default family, explicit head_dim, tied / untied, dtype).
FIXTURES = {
    "synth_llama": (TINY + ["--layers", "2", "--vocab", "300", "--dtype", "float32"],
                    "LlamaForCausalLM", {}),
    # The family's own vocabulary (128256) and the default float16 storage.
    "synth_llama3": (["--family", "llama3", "--layers", "2"] + TINY, "LlamaForCausalLM",
                     {"rope_parameters": LLAMA3_ROPE, "vocab_size": 128256,
                      "tie_word_embeddings": False}),
    "synth_llama3_tied": (["--family", "llama3", "--layers", "2", "--vocab", "300", "--tied",
                           "--dtype", "float32"] + TINY, "LlamaForCausalLM",
                          {"rope_parameters": LLAMA3_ROPE, "tie_word_embeddings": True}),
    "synth_qwen3": (["--family", "qwen3", "--layers", "2", "--head-dim", "32", "--vocab", "300",
                     "--dtype", "float32"] + TINY, "Qwen3ForCausalLM",
                    {"head_dim": 32, "rope_parameters": {"rope_type": "default", "rope_theta": 1e6}}),
    # Six layers: the sixth is Gemma 3's global layer (rope_theta, not rope_local_base_freq).
    "synth_gemma3": (["--family", "gemma3", "--layers", "6", "--head-dim", "32", "--vocab", "300",
                      "--dtype", "float32"] + TINY, "Gemma3ForCausalLM",
                     {"layer_types": ["sliding_attention"] * 5 + ["full_attention"],
                      "head_dim": 32, "query_pre_attn_scalar": 32, "sliding_window": 512,
                      "tie_word_embeddings": True,
                      "rope_parameters": {"full_attention": {"rope_type": "default", "rope_theta": 1e6},
                                          "sliding_attention": {"rope_type": "default",
                                                                "rope_theta": 10000.0}}}),
    "synth_gemma3_untied": (["--family", "gemma3", "--layers", "2", "--untied", "--vocab", "300",
                             "--dtype", "bfloat16"] + TINY, "Gemma3ForCausalLM",
                            {"tie_word_embeddings": False}),
    # Fused qkv_proj / gate_up_proj written from Phi-3's schema.
    "synth_phi3": (["--family", "phi3", "--layers", "2", "--vocab", "300", "--dtype", "float32"]
                   + TINY, "Phi3ForCausalLM", {"tie_word_embeddings": False}),
    # Mixture of experts: 4 experts of 96, top-2 (Mixtral), 4 of 64, top-2 with norm_topk_prob
    # (Qwen3-MoE, explicit head_dim).
    "synth_mixtral": (["--family", "mixtral", "--layers", "2", "--vocab", "300", "--experts", "4",
                       "--top-k", "2", "--expert-intermediate", "96", "--dtype", "float32"] + TINY,
                      "MixtralForCausalLM", {"num_local_experts": 4, "num_experts_per_tok": 2,
                                             "intermediate_size": 96}),
    "synth_qwen3_moe": (["--family", "qwen3_moe", "--layers", "2", "--head-dim", "32", "--vocab",
                         "300", "--experts", "4", "--top-k", "2", "--expert-intermediate", "64",
                         "--dtype", "float32"] + TINY, "Qwen3MoeForCausalLM",
                        {"num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 64,
                         "norm_topk_prob": True}),
}
BATCH, SEQ = 2, 16


def fail(name, msg):
    sys.exit(f"make_synth_fixtures: {name}: {msg}")


def holds(got, want):
    """got equals want; for a dict, on want's keys only (transformers adds keys of its own)."""
    if isinstance(want, dict):
        return isinstance(got, dict) and all(holds(got.get(k), v) for k, v in want.items())
    return got == want


def check_norm_centres(name, path, one_plus):
    """Every stored norm gain's median near the family's identity (0 for (1 + w), else 1)."""
    centre = 0.0 if one_plus else 1.0
    index = json.load(open(os.path.join(path, "model.safetensors.index.json")))["weight_map"]
    for tensor, shard in index.items():
        if "norm" not in tensor:
            continue
        with safe_open(os.path.join(path, shard), "pt") as f:
            median = f.get_tensor(tensor).float().median().item()
        if abs(median - centre) > 0.2:
            fail(name, f"{tensor}: median gain {median:.3f}; expected about {centre}")


def write_fixture(calq, out, name, flags, cls, checks, seed):
    path = os.path.join(out, name)
    shutil.rmtree(path, ignore_errors=True)
    subprocess.run([calq, "-q", "synth", *flags, "--seed", str(seed), "--out", path], check=True)
    model, loading = transformers.AutoModelForCausalLM.from_pretrained(
        path, dtype=torch.float32, attn_implementation="eager", experts_implementation="eager",
        output_loading_info=True)
    model.eval()
    for kind in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
        if loading.get(kind):
            fail(name, f"transformers {kind}: {loading[kind]}")
    if type(model).__name__ != cls:
        fail(name, f"transformers built {type(model).__name__}; expected {cls}")
    config = model.config
    for key, want in checks.items():
        got = getattr(config, key)
        if not holds(got, want):
            fail(name, f"config {key} reads {got}; expected {want}")
    check_norm_centres(name, path, cls.startswith("Gemma"))
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 256, (BATCH, SEQ), generator=gen)  # the byte tokenizer's ids
    with torch.no_grad():
        logits = model(input_ids=ids).logits.float().contiguous()
        exact = transformers.AutoModelForCausalLM.from_pretrained(
            path, dtype=torch.float64, attn_implementation="eager",
            experts_implementation="eager").eval()(input_ids=ids).logits
    noise = (logits.double() - exact).abs().max().item()
    if noise > MAX_FP32_NOISE:
        fail(name, f"transformers' float32 logits are {noise:.2e} from float64; expected at most "
                   f"{MAX_FP32_NOISE} (a fixture too ill-conditioned for a 1e-4 comparison)")
    lp = torch.log_softmax(logits[:, :-1].double(), -1)
    loss = -lp.gather(-1, ids[:, 1:].unsqueeze(-1)).mean().item()
    save_file({"input_ids": ids.contiguous(), "logits": logits},
              os.path.join(path, "expected.safetensors"))
    info = {"synth_flags": flags, "seed": seed, "class": cls, "loss": loss,
            "max_abs_logit": logits.abs().max().item(), "fp32_vs_fp64": noise,
            "transformers": transformers.__version__, "torch": torch.__version__}
    with open(os.path.join(path, "info.json"), "w") as f:
        json.dump(info, f, indent=1)
    print(f"{name}: {cls} loss {loss:.4f} max|logit| {info['max_abs_logit']:.3f} "
          f"float32 noise {noise:.2e}", flush=True)
    return info


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip().splitlines()[-1])
    calq, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(1)
    manifest = {}
    for seed, (name, (flags, cls, checks)) in enumerate(FIXTURES.items(), start=1):
        info = write_fixture(calq, out, name, flags, cls, checks, seed)
        manifest[name] = {"class": cls, "loss": info["loss"]}
    tmp = os.path.join(out, ".manifest.json.tmp")
    with open(tmp, "w") as f:
        json.dump({"transformers": transformers.__version__, "fixtures": manifest}, f, indent=1)
    os.rename(tmp, os.path.join(out, "manifest.json"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
