#!/usr/bin/env python3
"""Builds tiny random models of every family with transformers' own classes and records
transformers' logits, as ground truth for calq's forward (tests/core/family_fixtures_test.cpp).

Each fixture is a directory in the layout of data/hf-fixtures:
  config.json, model.safetensors   what save_pretrained wrote (transformers' own spelling)
  expected.safetensors             input_ids (int64 [2, seq]) and logits (float32); for a
                                   bf16 fixture logits are its bf16 weights computed in
                                   float32 and logits_bf16 transformers' bf16 run
  info.json                        family, class, versions, dtype, loss, ppl
and <out>/manifest.json lists them. Deterministic: every fixture has its own seed, and the
same versions give the same bytes.

Why the configs look as they do: the weights are widened (initializer_range 0.2, norm gains
drawn around their identity) so attention is sharp and a wrong rope, norm form or mask moves
logits by far more than float32 noise; sequences (48 tokens) are longer than every sliding
window (16) and every rope scaling's original context (24), so windows and scaling act inside
the test.

Run in the virtual environment scripts/setup.sh makes:  .venv/bin/python tests/families/make_hf_fixtures.py OUT
"""
import argparse
import json
import math
import os
import shutil
import sys
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing from a hub, ever
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

SEQ = 48
BATCH = 2
VOCAB = 512  # the llama2.c tok512.bin tokenizer (stories260K) can drive CLI runs on them
BASE = dict(vocab_size=VOCAB, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
            initializer_range=0.2, rms_norm_eps=1e-6, tie_word_embeddings=False,
            bos_token_id=1, eos_token_id=2, pad_token_id=0)
ORIG_CTX = 24  # original_max_position_embeddings of every rope-scaling fixture


def llama3_rope():
    return {"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": ORIG_CTX}


# name -> (model_type, config overrides). One row per behaviour the family issue names.
FIXTURES = {
    # Llama 1/2/3.x
    "llama_gqa": ("llama", {}),
    "llama_mha_tied": ("llama", dict(num_key_value_heads=4, tie_word_embeddings=True)),
    "llama_head_dim24": ("llama", dict(head_dim=24)),
    "llama3_rope": ("llama", dict(rope_parameters=llama3_rope())),
    "llama3_rope_tied": ("llama", dict(rope_parameters=llama3_rope(), tie_word_embeddings=True)),
    "llama_rope_linear": ("llama", dict(rope_parameters={"rope_type": "linear", "rope_theta": 10000.0,
                                                         "factor": 4.0})),
    "llama_rope_dynamic": ("llama", dict(max_position_embeddings=ORIG_CTX, rope_parameters={
        "rope_type": "dynamic", "rope_theta": 10000.0, "factor": 2.0})),
    "llama_rope_yarn": ("llama", dict(max_position_embeddings=4 * ORIG_CTX, rope_parameters={
        "rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "beta_fast": 32.0,
        "beta_slow": 1.0, "original_max_position_embeddings": ORIG_CTX})),
    # Mistral (sliding window shorter than the sequence), Qwen2 (q/k/v bias), Qwen2.5 yarn
    "mistral_window": ("mistral", dict(sliding_window=16)),
    "qwen2": ("qwen2", dict(use_sliding_window=False)),
    "qwen2_yarn": ("qwen2", dict(use_sliding_window=False, max_position_embeddings=4 * ORIG_CTX, rope_parameters={
        "rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
        "original_max_position_embeddings": ORIG_CTX})),
    # Qwen3 dense: per-head q/k RMSNorm, explicit head_dim, no bias
    "qwen3": ("qwen3", dict(head_dim=32)),
    "qwen3_tied": ("qwen3", dict(head_dim=16, num_key_value_heads=4, tie_word_embeddings=True)),
    # Gemma 2 / 3 text
    "gemma2": ("gemma2", dict(head_dim=16, query_pre_attn_scalar=24, sliding_window=16,
                              attn_logit_softcapping=5.0, final_logit_softcapping=3.0,
                              hidden_activation="gelu_pytorch_tanh", tie_word_embeddings=True)),
    "gemma3_text": ("gemma3_text", dict(head_dim=16, query_pre_attn_scalar=24, sliding_window=16,
                                        num_hidden_layers=3, sliding_window_pattern=2,
                                        rope_local_base_freq=1000.0,
                                        hidden_activation="gelu_pytorch_tanh",
                                        tie_word_embeddings=True)),
    # Phi-3: fused qkv_proj / gate_up_proj, a sliding window (Phi-3-mini-4k sets 2047), longrope
    "phi3": ("phi3", dict(num_key_value_heads=4, sliding_window=16)),
    "phi3_longrope": ("phi3", dict(num_key_value_heads=4,
                                   max_position_embeddings=96, original_max_position_embeddings=ORIG_CTX,
                                   rope_parameters={"rope_type": "longrope", "rope_theta": 10000.0,
                                                    "short_factor": [1.0 + 0.05 * i for i in range(16)],
                                                    "long_factor": [1.5 + 0.2 * i for i in range(16)]})),
    # Mixture of experts
    "mixtral": ("mixtral", dict(num_local_experts=4, num_experts_per_tok=2, sliding_window=None)),
    "qwen2_moe": ("qwen2_moe", dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=128,
                                    shared_expert_intermediate_size=256, norm_topk_prob=False,
                                    use_sliding_window=False)),
    "qwen3_moe": ("qwen3_moe", dict(head_dim=32, num_experts=4, num_experts_per_tok=2,
                                    moe_intermediate_size=128, norm_topk_prob=True,
                                    decoder_sparse_step=1, mlp_only_layers=[0])),
}
# bfloat16 storage (the weights transformers' bf16 model holds).
BF16 = {"llama3_rope_bf16": "llama3_rope", "qwen3_bf16": "qwen3"}
# Rows added after the bf16 ones: seeds follow job order, so they come last and every earlier
# fixture keeps its seed and its bytes.
LATER = {
    # Phi-4-mini: grouped-query attention, tied head, longrope on the first 3/4 of each head
    # (partial_rotary_factor 0.75 at the top level, as its config.json has it)
    "phi4_mini_partial": ("phi3", dict(num_key_value_heads=2, tie_word_embeddings=True,
                                       partial_rotary_factor=0.75, max_position_embeddings=96,
                                       original_max_position_embeddings=ORIG_CTX,
                                       rope_parameters={"rope_type": "longrope", "rope_theta": 10000.0,
                                                        "short_factor": [1.0 + 0.05 * i for i in range(12)],
                                                        "long_factor": [1.5 + 0.2 * i for i in range(12)]})),
    # Gemma 3 multimodal (Gemma3ForConditionalGeneration): the language model under
    # language_model., a one-layer SigLIP vision tower calq carries over unquantized
    "gemma3_mm": ("gemma3", dict(
        text_config=dict(head_dim=32, query_pre_attn_scalar=24, sliding_window=16,
                         num_hidden_layers=3, sliding_window_pattern=2, rope_local_base_freq=1000.0,
                         hidden_activation="gelu_pytorch_tanh", tie_word_embeddings=True),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                           num_attention_heads=2, image_size=28, patch_size=14),
        mm_tokens_per_image=4)),
    # 8 experts, top-2, windowed attention: the expert-policy tests calibrate it on so few
    # tokens that some experts receive none
    "mixtral_8x": ("mixtral", dict(num_local_experts=8, num_experts_per_tok=2, sliding_window=16,
                                   intermediate_size=128)),
}
# bfloat16 rows added after LATER, for the same reason.
LATER_BF16 = {"mixtral_bf16": "mixtral"}


def identity_centred_norms(model, gen):
    """Norm gains drawn around the identity, so a norm folded in the wrong form shows."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() != 1 or "norm" not in name:
                continue
            # Gemma's RMSNorm multiplies by (1 + w) and initialises w = 0; every other by w = 1.
            centre = 0.0 if type(model).__name__.startswith("Gemma") else 1.0
            p.copy_(centre + 0.3 * torch.randn(p.shape, generator=gen))


def build(name, model_type, overrides, seed, dtype):
    cfg = dict(BASE)
    cfg.update(overrides)
    if "text_config" in overrides:  # a multimodal checkpoint: BASE describes its language model
        text = dict(BASE)
        text.update(overrides["text_config"])
        cfg = {k: v for k, v in overrides.items() if k != "text_config"}
        cfg["text_config"] = text
        cfg["tie_word_embeddings"] = text["tie_word_embeddings"]
    config = transformers.AutoConfig.for_model(model_type, **cfg)
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager",
                                                          experts_implementation="eager")
    gen = torch.Generator().manual_seed(seed + 1)
    identity_centred_norms(model, gen)
    if hasattr(model, "tie_weights"):
        model.tie_weights()
    return model.to(dtype).eval()


def next_token_loss(logits, ids):
    lp = torch.log_softmax(logits[:, :-1].double(), -1)
    return -lp.gather(-1, ids[:, 1:].unsqueeze(-1)).mean().item()


def write_fixture(out, name, model_type, overrides, seed, dtype):
    model = build(name, model_type, overrides, seed, dtype)
    gen = torch.Generator().manual_seed(seed + 2)
    ids = torch.randint(3, VOCAB, (BATCH, SEQ), generator=gen)
    tmp = tempfile.mkdtemp(prefix=f".{name}.", dir=out)
    model.save_pretrained(tmp, safe_serialization=True)
    # Logits from the saved checkpoint as a user loads it (from_pretrained with a dtype): a bf16
    # model cast in memory would also round rope's inv_freq buffer, which a loaded one keeps
    # in float32. For a bf16 fixture "logits" are its weights computed in float32 (what calq's
    # float32 compute must equal) and logits_bf16 transformers' own bf16 run.
    def run(run_dtype):
        loaded = transformers.AutoModelForCausalLM.from_pretrained(
            tmp, dtype=run_dtype, attn_implementation="eager",
            experts_implementation="eager").eval()
        with torch.no_grad():
            return loaded(input_ids=ids).logits.float().contiguous()
    expected = {"input_ids": ids.contiguous(), "logits": run(torch.float32)}
    if dtype != torch.float32:
        expected["logits_bf16"] = run(dtype)
    logits = expected["logits"]
    loss = next_token_loss(logits, ids)
    save_file(expected, os.path.join(tmp, "expected.safetensors"))
    info = {"family": model_type, "class": type(model).__name__, "transformers": transformers.__version__,
            "torch": torch.__version__, "dtype": str(dtype).replace("torch.", ""), "seed": seed,
            "loss": loss, "ppl": math.exp(loss), "input_shape": list(ids.shape),
            "max_abs_logit": logits.abs().max().item()}
    if "logits_bf16" in expected:
        info["loss_bf16"] = next_token_loss(expected["logits_bf16"], ids)
    with open(os.path.join(tmp, "info.json"), "w") as f:
        json.dump(info, f, indent=1)
    final = os.path.join(out, name)
    shutil.rmtree(final, ignore_errors=True)
    os.rename(tmp, final)
    return info


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", help="directory to write the fixtures into (created)")
    p.add_argument("--only", default="", help="comma-separated fixture names")
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    torch.set_num_threads(1)  # the same bytes on any machine
    only = set(filter(None, a.only.split(",")))
    jobs = [(n, t, o, torch.float32) for n, (t, o) in FIXTURES.items()]
    jobs += [(n, FIXTURES[base][0], FIXTURES[base][1], torch.bfloat16) for n, base in BF16.items()]
    jobs += [(n, t, o, torch.float32) for n, (t, o) in LATER.items()]
    jobs += [(n, FIXTURES[base][0], FIXTURES[base][1], torch.bfloat16) for n, base in LATER_BF16.items()]
    manifest = {}
    for seed, (name, model_type, overrides, dtype) in enumerate(jobs, start=100):
        if only and name not in only:
            continue
        info = write_fixture(a.out, name, model_type, overrides, seed * 10, dtype)
        manifest[name] = {k: info[k] for k in ("family", "dtype", "loss", "loss_bf16") if k in info}
        print(f"{name}: {info['class']} {info['dtype']} loss {info['loss']:.4f} "
              f"max|logit| {info['max_abs_logit']:.2f}", flush=True)
    tmp = os.path.join(a.out, ".manifest.json.tmp")
    with open(tmp, "w") as f:
        json.dump({"transformers": transformers.__version__, "torch": torch.__version__,
                   "fixtures": manifest}, f, indent=1)
    os.rename(tmp, os.path.join(a.out, "manifest.json"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
