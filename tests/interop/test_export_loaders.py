"""ctest `interop.export_loaders` (issue 20, part 1): calq's exports opened by the ecosystem's own
loaders, on every family fixture (tests/families/make_hf_fixtures.py), and compared with calq.

For each case calq quantizes a fixture (`calq run`, 2 calibration windows of 64 tokens), exports
it, and writes its in-memory model's logits on the evaluation windows (`calq run --logits`: the
model after export, which is what calq's perplexity reports). The test then loads the directory
with `transformers.AutoModelForCausalLM.from_pretrained(..., device_map="cpu")` plus the library
the format needs, checks that every tensor was consumed (no missing / unexpected / mismatched
keys), runs the same token ids, and compares the logits (max abs difference) and the perplexity
(relative difference) with calq's within a tolerance derived from the loader's arithmetic
(TOLERANCES below). Every case records its figures in <CALQ_INTEROP_OUT>/export_loaders.json;
scripts/interop_table.py renders docs/interop.md from it.

Path taken, per format (the test id and the record name it):
  gptq-*, awq-gemm   loaded: transformers 5 -> optimum (GPTQ) -> GPTQModel's kernels. On CPU
                     GPTQModel's auto selection picks TorchAtenLinear / TorchAtenAwqLinear
                     (aten::_weight_int4pack_mm_for_cpu: bf16 activations and scales); the same
                     directory is also loaded with backend "torch" / "torch_awq" (weights
                     dequantized by GPTQModel's dequantize_weight in float16, float32 matmul).
  ct-*               loaded: transformers' CompressedTensorsHfQuantizer decompresses with
                     compressed-tensors' own compressors into float32 Linears. For W8A8 the CPU
                     path leaves activations float, so compressed-tensors' set_forward_quantized
                     (its own dynamic per-token QDQ) is put back on every quantized Linear.
  fake-*             loaded: plain transformers (float16 / bfloat16 weights widened to float32).
  lorc-peft          loaded: transformers (the fake base) + peft.PeftModel.from_pretrained on
                     <save.path>/lorc_adapter.
  unpacked           where transformers 5.17 cannot load a compressed-tensors export (MoE experts,
                     which it fuses at load; the multimodal Gemma 3), compressed-tensors' own
                     per-module decompressors unpack every quantized tensor and transformers runs
                     the resulting float checkpoint (test records path "unpacked", the reason
                     and the loader's error). GPTQ / AWQ / W8A8 / LoRA on those models stay "not
                     loadable" (xfail, KNOWN_GAPS): their fused experts have no Linear to attach
                     kernels, activation quantization or LoRA to.

Variants rotate over the families (GPTQ sym / asym / act-order, pack-quantized sym-group /
asym-group / sym-channel / act-order, naive 2 / 3 bit, fake fp16 / bf16), so every family is
checked once per format and every variant on several families, in a few minutes on 2 cores.
"""
import json
import math
import os
import shutil
from dataclasses import dataclass, field

import pytest
import torch

from interop_helpers import SEQLEN, WINDOWS, calq_eval_logits, calq_export, forward_logits, \
    perplexity, python_windows

# One fixture per family (model_type); the family issue's other rows are variants of these.
FAMILIES = {
    "llama": "llama_gqa", "mistral": "mistral_window", "qwen2": "qwen2", "qwen3": "qwen3",
    "gemma2": "gemma2", "gemma3_text": "gemma3_text", "gemma3": "gemma3_mm", "phi3": "phi3",
    "mixtral": "mixtral", "qwen2_moe": "qwen2_moe", "qwen3_moe": "qwen3_moe",
}
# Extra rows where a fixture's own trait meets a format: o_proj in_features 96 (not a multiple
# of 64), bf16 storage, partial rotary with a tied head.
EXTRAS = {"gptq": ["llama_head_dim24"], "fake": ["llama3_rope_bf16"], "ct-pack": ["phi4_mini_partial"],
          "ct-actorder-dynamic": []}

G = "scheme.weights.group_size=32"  # 32 divides every fixture's in_features (96 included)
RTN, GPTQ = "rtn_w4g128", "gptq_w4g128"
# format kind -> [(variant, recipe, overrides, loader, calq reference)]
KINDS = {
    "gptq": [
        ("gptq-sym", RTN, ["save.format=gptq", "scheme.weights.sym=true", G], "gptqmodel", "run"),
        ("gptq-asym", RTN, ["save.format=gptq", "scheme.weights.sym=false", G], "gptqmodel", "run"),
        ("gptq-act-order", GPTQ, ["save.format=gptq", "scheme.weights.sym=false", G,
                                  "passes.0.gptq.act_order=true"], "gptqmodel", "run"),
    ],
    "awq": [("awq-gemm", "awq_w4g128", ["save.format=awq", G], "gptqmodel", "run")],
    "ct-pack": [
        ("ct-w4a16-sym-group", RTN, ["save.format=compressed-tensors", "scheme.weights.sym=true", G],
         "compressed-tensors", "run"),
        ("ct-w4a16-asym-group", RTN, ["save.format=compressed-tensors", "scheme.weights.sym=false", G],
         "compressed-tensors", "run"),
        ("ct-w4a16-sym-channel", RTN, ["save.format=compressed-tensors", "scheme.weights.sym=true",
                                       "scheme.weights.group_size=-1"], "compressed-tensors", "run"),
        # compressed-tensors 0.19 has no g_idx (actorder "group" removed): act-order with static
        # groups, the "weight" ordering, which stores as no ordering at all
        ("ct-w4a16-act-order-static", GPTQ, ["save.format=compressed-tensors",
                                             "scheme.weights.sym=true", G, "passes.0.gptq.act_order=true",
                                             "passes.0.gptq.static_groups=true"], "compressed-tensors", "run"),
    ],
    "ct-int": [("ct-w8a8-int", "smoothquant_w8a8", ["save.format=compressed-tensors",
                                                      "scheme.activations.bmm_inputs=false"],
                "compressed-tensors", "run")],
    "ct-naive": [
        ("ct-naive-w2", RTN, ["save.format=compressed-tensors", "scheme.weights.bits=2", G],
         "compressed-tensors", "run"),
        ("ct-naive-w3", RTN, ["save.format=compressed-tensors", "scheme.weights.bits=3", G],
         "compressed-tensors", "run"),
    ],
    # The fake export rounds calq's dequantized weights to save.dtype, which the in-memory model
    # (float32) does not: the reference is `calq eval` of the export (what calq reads back).
    "fake": [
        ("fake-fp16", RTN, ["save.format=fake", "save.dtype=float16", G], "transformers", "eval"),
        ("fake-bf16", RTN, ["save.format=fake", "save.dtype=bfloat16", G], "transformers", "eval"),
    ],
    # Dynamic act-order groups (g_idx) in compressed-tensors: calq must refuse, naming the reason.
    "ct-actorder-dynamic": [("ct-w4a16-act-order-gidx", GPTQ, [
        "save.format=compressed-tensors", "scheme.weights.sym=true", G,
        "passes.0.gptq.act_order=true"], "refused", "run")],
    "lorc": [("lorc-peft", RTN, ["save.format=fake", G, "passes=[rtn, {lorc: {rank: 4}}]"],
              "peft", "run")],
}

# Tolerances on the logits, by the loader's arithmetic; u16 = 2^-11 and ubf16 = 2^-9 are the
# unit roundoffs of float16 and bfloat16. The perplexity tolerance follows from the logit one:
# NLL_t = logsumexp(z_t) - z_t[y] and both terms move by at most max_v |dz_t,v|, so
# |d mean NLL| <= 2 max|dz| and the relative ppl difference <= exp(2 tol) - 1.
#   float32       the loader computes in float32 with calq's weights bit for bit (compressed-
#                 tensors decompresses (q - z) * s with the float16 scale widened: exact in
#                 float32, as calq's dequantization; fake float16 / bfloat16 weights and peft's
#                 float16 factors widen exactly): only summation order and libm differ, which the
#                 family-match suite measured at <= 3e-5 on every fixture (docs/family_match.md).
#                 Absolute 1e-3 (30x that).
#   w8a8          weights as above; activations quantized per token by the loaded model with
#                 vLLM's arithmetic (per_token_int_qdq: max|x| / 127, round half even), the same
#                 formula as calq's. The two runtimes' inputs differ by float32 noise (~1e-5), so
#                 the codes of inputs within that distance of a rounding tie flip: each flip moves
#                 one input by a whole step (max|x| / 127, ~1 % of the token's largest input), and
#                 on these fixtures' sharp attention one flip moves logits by up to ~1. Logits:
#                 absolute 1.0. Flips are rare and touch few tokens, so the perplexity is held
#                 tighter than the logit bound gives: relative 2e-2 (about the change of 2 tokens'
#                 NLL by 0.5 in the 126 predicted).
#   fp16-weights  GPTQModel's "torch" kernels: dequantize_weight computes s * (q - z) in float16,
#                 one rounding per weight (relative <= u16), float32 matmul. Each linear's output
#                 moves by <= u16 * sum|w x|; to first order the logits move by at most the sum
#                 over the linears on the longest path (4 per layer: q/k/v, o, gate/up, down; at
#                 most 3 layers here) of that relative error times the logit scale, with a 1.5
#                 margin for the fixtures' sharp attention: 1.5 * 12 * u16 * max(1, max|z|).
#   bf16-kernel   GPTQModel's CPU auto kernels (TorchAten*Linear, aten::_weight_int4pack_mm_for_cpu):
#                 activations, scales and dequantized weights in bfloat16, 3 roundings of ubf16 per
#                 linear, float32 accumulation: 1.5 * 12 * 3 * ubf16 * max(1, max|z|).
U16, UBF16 = 2.0 ** -11, 2.0 ** -9
TOLERANCES = {"float32": 1e-3, "w8a8": 1.0, "fp16-weights": 18 * U16, "bf16-kernel": 54 * UBF16}


def logit_tol(kind, logits):
    if kind in ("float32", "w8a8"):
        return TOLERANCES[kind]
    return TOLERANCES[kind] * max(1.0, logits.abs().max().item())


@dataclass
class Case:
    fixture: str
    family: str
    kind: str
    variant: str
    recipe: str
    overrides: list
    loader: str
    reference: str
    id: str = field(init=False)

    def __post_init__(self):
        self.id = f"{self.family}-{self.fixture}-{self.variant}"

    def reason(self, env):
        """Why calq is not asked to export this case, or None."""
        if not os.path.isdir(os.path.join(env.fixtures, self.fixture)):
            return f"fixture {self.fixture} absent"
        return None


def build_cases():
    cases = []
    for kind, variants in KINDS.items():
        rows = list(FAMILIES.items()) + [(None, f) for f in EXTRAS.get(kind, [])]
        if kind == "ct-actorder-dynamic":
            rows = rows[:1]
        for i, (family, fixture) in enumerate(rows):
            variant, recipe, overrides, loader, ref = variants[i % len(variants)]
            cases.append(Case(fixture, family or fixture_family(fixture), kind, variant, recipe,
                              overrides, loader, ref))
    return cases


def fixture_family(fixture):
    return {"llama_head_dim24": "llama", "llama3_rope_bf16": "llama", "phi4_mini_partial": "phi3"}[fixture]


CASES = build_cases()
REFUSAL = "expected shapes the format packs"

# Loader limitations found by this suite, outside calq: the case is recorded "not loadable" with
# the reason and the loader's error, and xfails (a loader that starts working turns it "loaded").
MOE = {"mixtral", "qwen2_moe", "qwen3_moe"}
KNOWN_GAPS = [
    (MOE, {"gptq", "awq"},
     "transformers 5.17 holds MoE experts fused (experts.gate_up_proj [E, 2I, H], experts.down_proj "
     "[E, H, I]); optimum / GPTQModel replace nn.Linear modules only, so the per-expert qweight / "
     "qzeros / scales are unexpected keys and the fused expert weights missing"),
    (MOE, {"ct-pack", "ct-int", "ct-naive"},
     "transformers 5.17 fuses per-expert tensors at load (weight conversion); with compressed-"
     "tensors' per-expert weight_packed / weight_scale the conversion fails or leaves float16 "
     "experts beside float32 activations"),
    ({"gemma3"}, {"awq"},
     "Gemma3ForConditionalGeneration with GPTQModel's AWQ kernels: a module reads .weight of a "
     "TorchAtenAwqLinear"),
    ({"gemma3"}, {"ct-pack", "ct-int", "ct-naive"},
     "Gemma3ForConditionalGeneration through compressed-tensors decompression: float16 weights "
     "meet float32 activations (expected m1 and m2 to have the same dtype)"),
    (MOE, {"lorc"},
     "transformers 5.17's fused experts have no per-expert Linear: peft attaches LoRA to the "
     "attention (and shared-expert) linears only, the experts' factors are dropped"),
]


def known_gap(case):
    for families, kinds, reason in KNOWN_GAPS:
        if case.family in families and case.kind in kinds:
            return reason
    return None


def export_case(env, case):
    """Runs calq for one case (in the exporter's threads). Returns a dict: model, ppl, logits
    file, or refused (calq's line) when calq says the format cannot hold the model."""
    work = os.path.join(env.out, "work", case.id)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    logits = os.path.join(work, "calq_logits.safetensors")
    try:
        model, ppl = calq_export(env, case.fixture, case.recipe, case.overrides,
                                 os.path.join(work, "run"), logits=logits)
    except RuntimeError as e:
        if REFUSAL in str(e) or "cannot be stored" in str(e) or "cannot hold" in str(e):
            return {"refused": str(e)}
        raise
    out = {"model": model, "ppl": ppl, "logits": logits, "work": work}
    if case.reference == "eval":
        ppl_e, ids_e, logits_e = calq_eval_logits(env, model, os.path.join(work, "calq_eval"))
        out.update(ppl=ppl_e, ppl_in_memory=ppl, logits=os.path.join(work, "calq_eval.safetensors"))
    return out


# As the fixtures' reference logits were made (make_hf_fixtures.py): eager attention (Gemma 2's
# attention softcapping exists only there) and eager experts.
EAGER = {"attn_implementation": "eager", "experts_implementation": "eager"}


def check_loading_info(info):
    bad = {k: v for k, v in info.items() if k != "error_msgs" and v}
    if info.get("error_msgs"):
        bad["error_msgs"] = info["error_msgs"]
    assert not bad, f"transformers did not consume the checkpoint exactly: {bad}"


def load_gptqmodel(model_dir, backend=None):
    import transformers
    kw = {}
    if backend is not None:
        qc = json.load(open(os.path.join(model_dir, "config.json")))["quantization_config"]
        if qc["quant_method"] == "gptq":
            kw["quantization_config"] = transformers.GPTQConfig(bits=qc["bits"], backend=backend)
        else:
            kw["quantization_config"] = transformers.AwqConfig(bits=qc["bits"], backend=backend)
    model, info = transformers.AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=torch.float32, device_map="cpu", output_loading_info=True, **EAGER, **kw)
    check_loading_info(info)
    kernels = sorted({type(m).__name__ for m in model.modules() if hasattr(m, "qweight")})
    assert kernels, "no GPTQModel quantized linear in the loaded model"
    return model.eval(), kernels


def load_plain(model_dir):
    import transformers
    model, info = transformers.AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=torch.float32, device_map="cpu", output_loading_info=True, **EAGER)
    check_loading_info(info)
    return model.eval()


def load_compressed_tensors(model_dir, activations):
    """transformers + compressed-tensors; activations: None (as loaded), "ct" (compressed-tensors'
    own set_forward_quantized QDQ) or "vllm" (the per-token int8 arithmetic of vLLM's kernels,
    with the bits / strategy / symmetry compressed-tensors parsed from the config)."""
    from compressed_tensors.quantization.lifecycle.forward import set_forward_quantized
    model = load_plain(model_dir)
    schemes = [m for m in model.modules() if getattr(m, "quantization_scheme", None) is not None]
    assert schemes, "no module carries a compressed-tensors quantization_scheme"
    n = 0
    for m in schemes:
        args = m.quantization_scheme.input_activations
        if args is None or activations is None:
            continue
        n += 1
        if activations == "ct":
            set_forward_quantized(m)  # compressed-tensors' own QDQ forward (weights: compressed)
        else:
            assert args.dynamic and args.symmetric and args.strategy == "token", args
            m.register_forward_pre_hook(per_token_int_qdq(args.num_bits))
    what = {None: "", "ct": "compressed-tensors set_forward_quantized",
            "vllm": "per-token int8 as vLLM"}[activations]
    return model, ["Linear (decompressed)" + (f"; activations of {n}: {what}" if n else "")]


def per_token_int_qdq(bits):
    """Dynamic symmetric per-token activation QDQ as vLLM's W8A8 kernels compute it
    (vllm csrc/quantization/compressed_tensors/int8_quant_kernels.cu,
    dynamic_scaled_int8_quant: scale = max|x| / 127 per token, codes rounded to nearest even and
    clamped to int8), which is also calq's grid for scheme.activations (docs/algorithms.md §5).
    compressed-tensors' own QDQ divides by 127.5 ((q_max - q_min) / 2, quantization/utils/
    helpers.py calculate_qparams), a different grid: recorded beside, not compared."""
    qmax = 2 ** (bits - 1) - 1

    def hook(module, inputs):
        x = inputs[0]
        scale = x.abs().amax(dim=-1, keepdim=True) / qmax
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        return (torch.clamp(torch.round(x / scale), -qmax - 1, qmax) * scale,)
    return hook


def compare(record, kind, calq_logits, calq_ppl, logits, ids, label):
    ppl = perplexity(logits, ids)
    diff = (logits - calq_logits).abs().max().item()
    tol = logit_tol(kind, calq_logits)
    rel = abs(ppl - calq_ppl) / calq_ppl
    ppl_tol = 2e-2 if kind == "w8a8" else math.exp(2 * tol) - 1
    record[label] = {"ppl": ppl, "rel_diff": rel, "max_abs_logit_diff": diff, "logit_tol": tol,
                     "ppl_rel_tol": ppl_tol, "arithmetic": kind}
    return diff <= tol and rel <= ppl_tol, f"{label}: max|dlogit| {diff:.3g} (tol {tol:.3g}), " \
                                           f"ppl {ppl:.4f} vs calq {calq_ppl:.4f} rel {rel:.2e} (tol {ppl_tol:.2e})"


def run_loader(case, exp, record, versions, ids, calq_logits):
    """Loads the export with the case's loader and compares; returns [(ok, message)]."""
    checks = []
    model_dir = exp["model"]
    if case.loader == "gptqmodel":
        record["loader"] = f"transformers {versions['transformers']} + optimum {versions['optimum']} " \
                           f"+ GPTQModel {versions['GPTQModel']}"
        model, kernels = load_gptqmodel(model_dir)
        record["kernel"] = kernels
        checks.append(compare(record, "bf16-kernel", calq_logits, exp["ppl"],
                              forward_logits(model, ids), ids, "transformers"))
        del model
        backend = "torch" if "gptq" in case.variant else "torch_awq"
        model, kernels = load_gptqmodel(model_dir, backend=backend)
        record["kernel_strict"] = kernels
        checks.append(compare(record, "fp16-weights", calq_logits, exp["ppl"],
                              forward_logits(model, ids), ids, "transformers_" + backend))
    elif case.loader == "compressed-tensors":
        record["loader"] = f"transformers {versions['transformers']} + compressed-tensors " \
                           f"{versions['compressed-tensors']}"
        w8a8 = "w8a8" in case.variant
        model, kernels = load_compressed_tensors(model_dir, "vllm" if w8a8 else None)
        record["kernel"] = kernels
        checks.append(compare(record, "w8a8" if w8a8 else "float32", calq_logits, exp["ppl"],
                              forward_logits(model, ids), ids, "transformers"))
        if w8a8:  # informational: compressed-tensors' own activation grid (max|x| / 127.5)
            del model
            model, _ = load_compressed_tensors(model_dir, "ct")
            compare(record, "w8a8", calq_logits, exp["ppl"], forward_logits(model, ids), ids,
                    "transformers_ct_qdq")
            record["transformers_ct_qdq"]["note"] = "compressed-tensors QDQ grid max|x|/127.5: not compared"
    elif case.loader == "transformers":
        record["loader"] = f"transformers {versions['transformers']}"
        model = load_plain(model_dir)
        checks.append(compare(record, "float32", calq_logits, exp["ppl"],
                              forward_logits(model, ids), ids, "transformers"))
    else:  # peft
        from peft import PeftModel
        record["loader"] = f"transformers {versions['transformers']} + peft {versions['peft']}"
        adapter = os.path.join(model_dir, "lorc_adapter")
        base_model = load_plain(model_dir)
        model = PeftModel.from_pretrained(base_model, adapter).eval()
        n_lora = sum(1 for n, _ in model.named_modules() if n.endswith("lora_A"))
        targets = json.load(open(os.path.join(adapter, "adapter_config.json")))["target_modules"]
        record["lora_modules"] = {"attached": n_lora, "in_adapter": len(targets)}
        assert n_lora == len(targets), \
            f"peft attached LoRA to {n_lora} of the adapter's {len(targets)} target modules"
        record["kernel"] = [f"peft LoRA on {n_lora} linears"]
        checks.append(compare(record, "float32", calq_logits, exp["ppl"],
                              forward_logits(model, ids), ids, "transformers"))
    return checks

@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_export_loads(case, env, versions, results, exporter):
    from safetensors.torch import load_file
    base = {"family": case.family, "variant": case.variant, "kind": case.kind,
            "recipe": case.recipe, "overrides": case.overrides}
    reason = case.reason(env)
    if reason:
        results.add(case.fixture, case.variant, dict(base, path="not checked", reason=reason))
        pytest.skip(reason)
    exp = exporter(case.id)
    if case.loader == "refused":
        assert "refused" in exp and "actorder" in exp["refused"], \
            f"calq should refuse act-order groups in compressed-tensors, got {exp}"
        results.add(case.fixture, case.variant, dict(base, path="not checked", expected_refusal=True,
                                                     reason="calq refuses: " + exp["refused"]))
        return
    if "refused" in exp:
        results.add(case.fixture, case.variant, dict(base, path="not checked",
                                                     reason="calq refuses: " + exp["refused"]))
        return  # the format cannot hold this model: calq says so before any work
    ref = load_file(exp["logits"])
    ids, calq_logits = ref["input_ids"], ref["logits"]
    assert torch.equal(ids, python_windows(env)), "the Python llama2.c tokenizer disagrees with calq's ids"
    record = dict(base, ppl_calq=exp["ppl"], seqlen=SEQLEN, windows=WINDOWS, path="loaded")
    if "ppl_in_memory" in exp:
        record["ppl_calq_in_memory"] = exp["ppl_in_memory"]
    try:
        checks = run_loader(case, exp, record, versions, ids, calq_logits)
    except Exception as e:
        gap = known_gap(case)
        if gap and case.kind in ("ct-pack", "ct-naive"):
            checks = run_unpacked_ct(case, exp, record, versions, ids, calq_logits, gap, e)
            finish(case, record, checks, exp, results)
            return
        if gap and case.kind in ("gptq", "awq") and case.family in MOE:
            checks = run_unpacked_gptqmodel(case, exp, record, versions, ids, calq_logits, gap, e)
            finish(case, record, checks, exp, results)
            return
        record.update(path="failed" if gap is None else "not loadable",
                      error=f"{type(e).__name__}: {str(e)[:600]}")
        if gap:
            record["reason"] = f"{gap} ({type(e).__name__}: {str(e)[:200]})"
        results.add(case.fixture, case.variant, record)
        results.write()
        if gap:
            pytest.xfail(gap)
        raise
    finish(case, record, checks, exp, results)


def finish(case, record, checks, exp, results):
    record["ok"] = all(ok for ok, _ in checks)
    results.add(case.fixture, case.variant, record)
    results.write()
    shutil.rmtree(os.path.join(exp["work"], "run", "model"), ignore_errors=True)
    shutil.rmtree(os.path.join(exp["work"], "unpacked"), ignore_errors=True)
    assert record["ok"], "; ".join(msg for _, msg in checks)


def run_unpacked_gptqmodel(case, exp, record, versions, ids, calq_logits, gap, error):
    """Where transformers cannot load a GPTQ / AWQ export (MoE: fused experts), the "unpacked"
    path: GPTQModel's own dequantization (interop_helpers.gptqmodel_unpack_to_float_checkpoint)
    gives dense weights, which transformers loads as a float model. With the scales widened to
    float32 first, s * (q - z) is exact: the float32 tolerance."""
    from interop_helpers import gptqmodel_unpack_to_float_checkpoint
    return run_unpacked(gptqmodel_unpack_to_float_checkpoint, "dequantized",
                        f"GPTQModel {versions['GPTQModel']} dequantization",
                        exp, record, versions, ids, calq_logits, gap, error)


def run_unpacked(unpack, verb, library, exp, record, versions, ids, calq_logits, gap, error):
    """Unpacks exp's model with `unpack`, runs it in transformers as a float checkpoint and
    compares with calq; weights that came out in float32 are held to the float32 tolerance."""
    dense = os.path.join(exp["work"], "unpacked")
    dtypes = unpack(exp["model"], dense)
    record.update(path="unpacked", reason=f"loader: {gap} ({type(error).__name__}: {str(error)[:160]})",
                  loader=f"{library} + transformers {versions['transformers']} (float checkpoint)",
                  kernel=[f"{verb} weights in {', '.join(dtypes)}"])
    model = load_plain(dense)
    arithmetic = "float32" if dtypes == ["float32"] else "fp16-weights"
    return [compare(record, arithmetic, calq_logits, exp["ppl"], forward_logits(model, ids), ids,
                    "transformers")]


def run_unpacked_ct(case, exp, record, versions, ids, calq_logits, gap, error):
    """Where transformers cannot load a compressed-tensors export (the known gaps above), the
    "unpacked" path: compressed-tensors' own decompressors give dense weights
    (interop_helpers.ct_unpack_to_float_checkpoint; s * (q - z) in float32 once the scale is
    widened), which transformers loads as a float model."""
    from interop_helpers import ct_unpack_to_float_checkpoint
    return run_unpacked(ct_unpack_to_float_checkpoint, "decompressed",
                        f"compressed-tensors {versions['compressed-tensors']} decompressors",
                        exp, record, versions, ids, calq_logits, gap, error)
