#!/usr/bin/env python3
"""ctest `families.moe_policy`: the mixture-of-experts calibration semantics of docs/moe.md on
the transformers-built 8-expert Mixtral fixture (mixtral_8x), calibrated on so few tokens
(1 window of 6) that some experts receive none.

  routed + expert_policy error  -> exit 1, one line naming layer, expert and token count
  routed + expert_policy damp   -> report.json moe.below_min_tokens lists every unrouted expert
                                   with policy "identity" (no token: H = I); every expert quantized
  routed + damp, min 4 tokens    -> experts with 1..3 tokens get policy "damp" with expert_damp
  routed + expert_policy rtn    -> the same experts with policy "rtn", their linears in the rtn
                                   report, not in gptq's
  all_experts                   -> every expert received every token and has a GPTQ Hessian
                                   (a gptq report entry with its damp); none below the minimum

and in every routed run, a layer's expert token counts add up to top_k × tokens.
Writes <fixtures>/calq_moe_policy.json.

Usage: moe_policy_test.py CALQ FIXTURES_DIR SHARED_DATA SOURCE_DIR
"""
import json
import os
import subprocess
import sys
import tempfile

FIXTURE = "mixtral_8x"
SEQLEN = 6


def run(argv):
    p = subprocess.run(argv, capture_output=True, text=True)
    return p.returncode, (p.stderr.strip().splitlines() or [""])[-1]


def main():
    calq, fixtures, data, src = sys.argv[1:5]
    model = os.path.join(fixtures, FIXTURE)
    if not os.path.exists(os.path.join(model, "config.json")):
        ci = os.environ.get("CI", "") not in ("", "false", "0")
        print(f"families.moe_policy: no fixture at {model}" + ("" if ci else " (skipped)"))
        return 1 if ci else 0
    stories = os.path.join(data, "stories260K")
    tok = os.path.join(stories, "tok512.bin")
    calib = os.path.join(stories, "tinystories_valid_calib.txt")
    work = tempfile.mkdtemp(prefix="calq-moe-policy-")
    failures, results = [], {}

    def calq_run(tag, extra):
        out = os.path.join(work, tag)
        sets = ["--set", f"model.path={model}", "--set", f"model.tokenizer={tok}",
                "--set", f"calibration.data={calib}", "--set", "calibration.nsamples=1",
                "--set", f"calibration.seqlen={SEQLEN}", "--set", "model.dtype=float32",
                "--set", "eval.perplexity=[]", "--set", "scheme.weights.group_size=32"]
        for e in extra:
            sets += ["--set", e]
        rc, line = run([calq, "-q", "run", os.path.join(src, "configs", "gptq_w4g128.yaml"),
                        *sets, "--out", out])
        report = None
        if os.path.exists(os.path.join(out, "report.json")):
            report = json.load(open(os.path.join(out, "report.json")))
        return rc, line, report

    def check(cond, what):
        print(("ok   " if cond else "FAIL ") + what, flush=True)
        if not cond:
            failures.append(what)

    # error: the run stops naming the expert
    rc, line, _ = calq_run("error", ["calibration.expert_policy=error"])
    results["error"] = {"exit": rc, "line": line}
    check(rc == 1 and "expert" in line and "calibration.min_expert_tokens" in line,
          f"expert_policy error stops with one line: {line}")

    # damp and rtn: the same unrouted experts, each with its policy
    unrouted = None
    for policy, label in (("damp", "identity"), ("rtn", "rtn")):
        rc, line, report = calq_run(policy, [f"calibration.expert_policy={policy}"])
        check(rc == 0 and report is not None, f"expert_policy {policy} runs ({line})")
        if report is None:
            continue
        moe = report["moe"]
        below = {(b["layer"], b["expert"]): b for b in moe["below_min_tokens"]}
        zero = {(e["layer"], e["expert"]) for e in moe["experts"] if e["tokens"] == 0}
        results[policy] = moe
        check(len(zero) >= 1, f"{policy}: at least one expert received no token ({sorted(zero)})")
        check(set(below) == zero and all(b["policy"] == label for b in below.values()),
              f"{policy}: below_min_tokens lists exactly the unrouted experts with policy {label}")
        unrouted = unrouted or zero
        check(zero == unrouted, f"{policy}: the same experts are unrouted under every policy")
        passes = {p["name"]: p for p in report["passes"]}
        gptq = {(l["index"], n) for l in passes["gptq"]["layers"] for n in l["linears"]}
        for (layer, expert) in zero:
            names = {f"mlp.experts.{expert}.{part}" for part in ("gate", "up", "down")}
            in_gptq = {n for (i, n) in gptq if i == layer and n in names}
            if policy == "rtn":
                rtn = {n for l in passes.get("rtn", {}).get("layers", [])
                       if l["index"] == layer for n in l["linears"] if n in names}
                check(not in_gptq and rtn == names,
                      f"rtn: layer {layer} expert {expert} quantized by rtn, not gptq")
            else:
                check(in_gptq == names, f"damp: layer {layer} expert {expert} quantized by gptq on H = I")
        # Routed: each token goes to top_k distinct experts in every sparse layer.
        top_k = json.load(open(os.path.join(model, "config.json")))["num_experts_per_tok"]
        for layer in sorted({e["layer"] for e in moe["experts"]}):
            total = sum(e["tokens"] for e in moe["experts"] if e["layer"] == layer)
            check(total == top_k * SEQLEN,
                  f"{policy}: layer {layer} routed {total} token slots = top_k x tokens")

    # damp with a minimum above zero: experts with a few tokens get H + 0.25·mean(diag H)·I
    rc, line, report = calq_run("damp_min4", ["calibration.expert_policy=damp",
                                              "calibration.min_expert_tokens=4",
                                              "calibration.expert_damp=0.25"])
    check(rc == 0 and report is not None, f"damp with min_expert_tokens 4 runs ({line})")
    if report is not None:
        moe = report["moe"]
        results["damp_min4"] = moe
        few = {(e["layer"], e["expert"]): e["tokens"] for e in moe["experts"] if e["tokens"] < 4}
        below = {(b["layer"], b["expert"]): b for b in moe["below_min_tokens"]}
        check(set(below) == set(few), "damp min 4: below_min_tokens lists every expert under 4 tokens")
        check(all(b["policy"] == ("identity" if b["tokens"] == 0 else "damp") and
                  (b["tokens"] == 0 or b["damp"] == 0.25) for b in below.values()),
              "damp min 4: a few tokens -> damp 0.25, none -> identity")
        check(any(0 < t < 4 for t in few.values()), f"damp min 4: some expert had 1..3 tokens ({few})")

    # all_experts: every expert sees every token and gets a Hessian
    rc, line, report = calq_run("all_experts", ["calibration.moe=all_experts",
                                                "calibration.expert_policy=error"])
    check(rc == 0 and report is not None, f"all_experts runs ({line})")
    if report is not None:
        moe = report["moe"]
        results["all_experts"] = moe
        tokens = SEQLEN
        check(all(e["tokens"] == tokens for e in moe["experts"]) and not moe["below_min_tokens"],
              f"all_experts: every expert received all {tokens} tokens")
        gptq = next(p for p in report["passes"] if p["name"] == "gptq")
        per_layer = {l["index"]: l["linears"] for l in gptq["layers"]}
        n_experts = json.load(open(os.path.join(model, "config.json")))["num_local_experts"]
        missing = [(i, e) for i in per_layer for e in range(n_experts)
                   if "damp" not in per_layer[i].get(f"mlp.experts.{e}.down", {})]
        check(not missing, f"all_experts: every expert linear has a GPTQ Hessian (missing {missing})")

    tmp = os.path.join(fixtures, ".calq_moe_policy.json.tmp")
    with open(tmp, "w") as f:
        json.dump(results, f, indent=1)
    os.rename(tmp, os.path.join(fixtures, "calq_moe_policy.json"))
    subprocess.run(["rm", "-rf", work])
    for f in failures:
        print("FAIL:", f)
    print(f"{sum(1 for _ in results)} runs, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
