#!/usr/bin/env python3
"""vLLM's own config parsing on a checkpoint directory, for checkpoint.verify (optional: run with a
Python that has vLLM importable, CALQ_VLLM_PYTHON; see docs/formats.md §8.3 for the throwaway venv).

Parses config.json's quantization_config with the class vLLM picks for its quant_method
(AutoGPTQConfig, AutoAWQConfig, CompressedTensorsConfig) and, for compressed-tensors, asks for the
scheme of one decoder linear (the code path that raises "No compressed-tensors compatible scheme
was found"). No GPU and no kernel: this is the configuration step only.

Prints one JSON line: {"accepted": bool, "class": str, "scheme": str | null, "error": str | null}.
Usage: vllm_config_check.py MODEL_DIR
"""
import json
import os
import sys


def main():
    d = sys.argv[1]
    qc = json.load(open(os.path.join(d, "config.json")))["quantization_config"]
    out = {"accepted": False, "class": None, "scheme": None, "error": None}
    try:
        method = qc["quant_method"]
        if method == "gptq":
            from vllm.model_executor.layers.quantization.auto_gptq import AutoGPTQConfig as C
        elif method == "awq":
            from vllm.model_executor.layers.quantization.auto_awq import AutoAWQConfig as C
        else:
            from vllm.model_executor.layers.quantization.compressed_tensors.compressed_tensors import (
                CompressedTensorsConfig as C)
        out["class"] = C.__name__
        cfg = C.from_config(qc)
        if method == "compressed-tensors":
            # The scheme of a decoder linear as vLLM resolves it: the first group's arguments.
            group = next(iter(cfg.target_scheme_map.values()))
            scheme = cfg._get_scheme_from_parts(
                weight_quant=group["weights"], input_quant=group.get("input_activations"),
                format=group.get("format"), layer_name="model.layers.0.self_attn.q_proj")
            out["scheme"] = type(scheme).__name__
        out["accepted"] = True
    except Exception as e:  # the refusal is the result
        out["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    print(json.dumps(out))


if __name__ == "__main__":
    main()
