#!/usr/bin/env python3
"""Runs calq on hostile inputs and records, for each, the exit code, the error line, the wall
time and the peak resident memory (issue #18; docs/robustness.md explains the rules).

Usage: scripts/hostile_campaign.py [CALQ_BINARY] [--data SHARED_DATA] [--out DIR]
Writes DIR/campaign.json (default build/hostile/) and regenerates docs/robustness_campaign.md
from it; exits 1 if any case's outcome differs from what it expects (the CI tests in
tests/cli/*_test.sh assert the same classes; this script measures them).
"""
import argparse
import json
import re
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("calq", nargs="?", default=os.path.join(ROOT, "build", "calq"))
    p.add_argument("--data", default=os.path.join(ROOT, "data"))
    p.add_argument("--out", default=os.path.join(ROOT, "build", "hostile"))
    p.add_argument("--only", default="", help="run only cases whose name contains this")
    return p.parse_args()


class Campaign:
    def __init__(self, calq, data, work):
        self.calq = os.path.abspath(calq)
        self.data = os.path.abspath(data)
        self.work = work
        self.results = []

    def path(self, *parts):
        return os.path.join(self.work, *parts)

    def run(self, klass, name, argv, expect_rc, note="", timeout=300, check=None, match=None):
        """Runs calq ARGV in the work folder under /usr/bin/time; records the outcome."""
        timing = self.path(".time")
        cmd = ["/usr/bin/time", "-f", "%e %M", "-o", timing, self.calq] + argv
        start = time.time()
        try:
            p = subprocess.run(cmd, cwd=self.work, capture_output=True, timeout=timeout)
            rc, stderr = p.returncode, p.stderr.decode("utf-8", "replace")
        except subprocess.TimeoutExpired as e:
            rc, stderr = "timeout", (e.stderr or b"").decode("utf-8", "replace")
        wall = time.time() - start
        peak_mb = None
        try:
            with open(timing) as f:
                last = f.read().strip().splitlines()[-1].split()
                peak_mb = round(int(last[1]) / 1024.0, 1)
        except (OSError, IndexError, ValueError):
            pass
        errors = [l for l in stderr.splitlines() if l.startswith("calq: error:")]
        warnings = [l for l in stderr.splitlines() if "warn" in l.lower()]
        line = errors[0] if errors else (warnings[0] if warnings else "")
        ok = rc == expect_rc and (rc != 1 or len(errors) == 1) and len(line) <= 600
        extra = check() if check else ""
        if match and not re.search(match, line):
            extra = (extra + "; " if extra else "") + f"message does not match /{match}/"
        if extra:
            ok = False
        self.results.append({
            "class": klass, "name": name, "exit": rc, "expected_exit": expect_rc,
            "message": line[:600], "message_bytes": len(line), "wall_s": round(wall, 2),
            "peak_rss_mb": peak_mb, "ok": ok, "note": note + (("; " + extra) if extra else ""),
        })
        print(f"{'ok  ' if ok else 'FAIL'} [{klass}] {name}: exit {rc}, {wall:.1f} s, "
              f"{peak_mb} MB: {line[:200]}", flush=True)


def write(path, data, mode="w"):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, mode) as f:
        f.write(data)


def safetensors(path, header_bytes, payload=b"\0" * 4):
    write(path, struct.pack("<Q", len(header_bytes)) + header_bytes + payload, "wb")


def unchanged(path, content):
    def check():
        try:
            with open(path, "rb") as f:
                return "" if f.read() == content else f"{path} changed"
        except OSError:
            return f"{path} is gone"
    return check


def main():
    a = parse_args()
    if not os.path.isdir(os.path.join(a.data, "stories260K")):
        print(f"hostile_campaign: test data not found at {a.data}", file=sys.stderr)
        return 2
    work = tempfile.mkdtemp(prefix="calq-hostile-")
    c = Campaign(a.calq, a.data, work)
    d = c.data
    fixture = f"{d}/hf-fixtures/llama"
    sotu = f"{d}/sotu-llama-6L"
    stories = f"{d}/stories260K"
    text = f"{sotu}/sotu_valid.txt"
    spm = ["--tokenizer", f"{stories}/tok512.bin"]  # 512 tokens, as the HF fixtures' vocab
    deep = "[" * 100000 + "]" * 100000
    with open(f"{fixture}/config.json") as f:
        config = json.load(f)

    def hf_dir(name, cfg=None, weights=True):
        p = c.path(name)
        os.makedirs(p, exist_ok=True)
        write(f"{p}/config.json", json.dumps(cfg if cfg is not None else config))
        if weights:
            shutil.copy(f"{fixture}/model.safetensors", p)
        return p

    def eval_cmd(model, *extra):
        # --seqlen 64 unless the case gives its own (CLI11 refuses the option twice).
        seqlen = [] if "--seqlen" in extra else ["--seqlen", "64"]
        return (["eval", "--model", model] + spm + ["--data", text] + seqlen + ["--max-windows", "1"]
                + list(extra))

    recipe = c.path("r.yaml")
    write(recipe, f"""model: {{path: {stories}/stories260K.bin, tokenizer: {stories}/tok512.bin}}
scheme:
  weights: {{bits: 4, group_size: 32, sym: false}}
passes: [rtn]
eval:
  perplexity:
    - {{data: {stories}/tinystories_valid_eval.txt, seqlen: 64, max_windows: 1}}
save: {{format: fake, path: ckpt}}
""")

    def run_cmd(*extra):
        return ["run", recipe] + list(extra)

    sel = lambda name: a.only in name  # noqa: E731

    # 1. Deep JSON
    if sel("deep-json"):
        p = hf_dir("deep_header", weights=False)
        safetensors(f"{p}/model.safetensors",
                    ('{"w":{"dtype":"F32","shape":%s,"data_offsets":[0,4]}}' % deep).encode())
        c.run("1 deep JSON", "deep-json safetensors shape, 100000 levels", eval_cmd(p), 1)
        p = hf_dir("deep_index", weights=False)
        write(f"{p}/model.safetensors.index.json",
              '{"weight_map":{"model.embed_tokens.weight":%s}}' % deep)
        c.run("1 deep JSON", "deep-json index weight_map, 100000 levels", eval_cmd(p), 1)
        p = c.path("deep_config")
        os.makedirs(p, exist_ok=True)
        shutil.copy(f"{fixture}/model.safetensors", p)
        write(f"{p}/config.json", json.dumps(config).replace(
            '"hidden_size": %d' % config["hidden_size"], '"hidden_size": ' + deep))
        c.run("1 deep JSON", "deep-json config.json hidden_size, 100000 levels", eval_cmd(p), 1)
        write(c.path("deep_tok/tokenizer.json"),
              '{"model":{"type":"BPE","vocab":{"a":%s},"merges":[]}}' % deep)
        c.run("1 deep JSON", "deep-json tokenizer.json vocab value, 100000 levels",
              ["eval", "--model", fixture, "--tokenizer", c.path("deep_tok/tokenizer.json"),
               "--data", text], 1)
        p = c.path("wide_config")
        os.makedirs(p, exist_ok=True)
        shutil.copy(f"{fixture}/model.safetensors", p)
        write(f"{p}/config.json", json.dumps(config).replace(
            '"hidden_size": %d' % config["hidden_size"],
            '"hidden_size": "' + "x" * 100000 + '"'))
        c.run("1 deep JSON", "deep-json a 100 KB string quoted in a message", eval_cmd(p), 1)

    # 2. YAML
    if sel("yaml"):
        lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
        lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i-1}"] * 9) + "]" for i in range(1, 10)]
        write(c.path("bomb.yaml"), "\n".join(lines) + f"\nmodel: {{path: {stories}/stories260K.bin}}\n")
        c.run("2 YAML", "yaml alias bomb, 9 levels of 9 aliases", ["run", "bomb.yaml"], 1)
        write(c.path("deep.yaml"), "model: " + "[" * 100000 + "\n")
        c.run("2 YAML", "yaml 100000 levels of flow nesting", ["run", "deep.yaml"], 1)
        write(c.path("block.yaml"), "".join(" " * i + f"k{i}:\n" for i in range(600)))
        c.run("2 YAML", "yaml 600 levels of block nesting", ["run", "block.yaml"], 1)
        write(c.path("big.yaml"), "model: {path: m}\n# " + "x" * (8 << 20) + "\n")
        c.run("2 YAML", "yaml recipe of 8 MiB", ["run", "big.yaml"], 1)
        write(c.path("utf16.yaml"), "model: {path: m}\n".encode("utf-16"), "wb")
        c.run("2 YAML", "yaml recipe in UTF-16 with a BOM", ["run", "utf16.yaml"], 1,
              note="YAML allows UTF-16; yaml-cpp decodes it, then model.path m is missing")
        c.run("2 YAML", "yaml recipe is /dev/zero", ["run", "/dev/zero"], 1)
        c.run("2 YAML", "yaml recipe is a directory", ["run", c.work], 1)

    # 3. Output paths
    if sel("output"):
        os.makedirs(c.path("thesis/chapters"), exist_ok=True)
        write(c.path("thesis/thesis.txt"), "four years")
        write(c.path("notes.txt"), "notes")
        keep = unchanged(c.path("thesis/thesis.txt"), b"four years")
        c.run("3 output paths", "output save.path = a user's non-empty directory",
              run_cmd("--out", "o1", "--set", "save.path=thesis"), 1, check=keep)
        c.run("3 output paths", "output save.path = a regular file",
              run_cmd("--out", "o2", "--set", "save.path=notes.txt"), 1,
              check=unchanged(c.path("notes.txt"), b"notes"))
        c.run("3 output paths", "output --out = a regular file", run_cmd("--out", "notes.txt"), 1,
              check=unchanged(c.path("notes.txt"), b"notes"))
        c.run("3 output paths", "output --out = a user's non-empty directory",
              run_cmd("--out", "thesis"), 1, check=keep)
        model = c.path("model_copy")
        shutil.copytree(fixture, model)
        write(c.path("own.yaml"), f"model: {{path: {model}}}\nscheme: {{weights: {{bits: 4, group_size: 32}}}}\n"
              f"passes: [rtn]\nsave: {{format: fake, path: {model}}}\n")
        c.run("3 output paths", "output save.path = the input model directory",
              ["run", "own.yaml", "--out", "o3"], 1,
              check=unchanged(f"{model}/model.safetensors",
                              open(f"{fixture}/model.safetensors", "rb").read()))
        c.run("3 output paths", "output save.path = /", run_cmd("--out", "o4", "--set", "save.path=/"), 1)
        c.run("3 output paths", "output save.path = .", run_cmd("--out", "o5", "--set", "save.path=."), 1)
        c.run("3 output paths", "output save.path = ..", run_cmd("--out", "o6", "--set", "save.path=.."), 1)
        os.symlink("thesis", c.path("link"))
        c.run("3 output paths", "output save.path = a symlink to a user's directory",
              run_cmd("--out", "o7", "--set", "save.path=link"), 1, check=keep)
        c.run("3 output paths", "output save.path with a newline in its name (allowed)",
              run_cmd("--out", "o8", "--set", "save.path=new\nline"), 0)
        c.run("3 output paths", "output save.path name of 300 bytes",
              run_cmd("--out", "o9", "--set", "save.path=" + "n" * 300), 1)
        lock = subprocess.Popen(["flock", "-n", c.path(".o10.calq-lock"), "sleep", "30"])
        time.sleep(0.5)
        c.run("3 output paths", "output two runs on one output (lock held)", run_cmd("--out", "o10"), 1)
        lock.kill()
        c.run("3 output paths", "output same outputs twice (calq's own: replaced)",
              run_cmd("--out", "o11", "--set", "save.path=ck11"), 0)
        c.run("3 output paths", "output same outputs twice, second run",
              run_cmd("--out", "o11", "--set", "save.path=ck11"), 0)

    # 4. Save problems before any work
    if sel("save"):
        c.run("4 save checks", "save gptq with out_features 172 (stories260K)",
              run_cmd("--out", "s1", "--set", "save.path=g1", "--set", "save.format=gptq"), 1)
        c.run("4 save checks", "save parent not writable (/sys)",
              run_cmd("--out", "s2", "--set", "save.path=/sys/calq/x"), 1)
        c.run("4 save checks", "save.path x/ (allowed, is x)",
              run_cmd("--out", "s3", "--set", f"save.path={c.path('xs')}/"), 0)

    # 6. Numbers
    if sel("numbers"):
        for field, value in [("rope_theta", 0), ("rope_theta", -1.0), ("rms_norm_eps", -1e-6),
                             ("rms_norm_eps", 2.0)]:
            cfg = dict(config)
            cfg[field] = value
            p = hf_dir(f"cfg_{field}_{value}", cfg)
            c.run("6 numbers", f"numbers config {field} = {value}", eval_cmd(p), 1, match=field)

        p = c.path("nan_weight")
        shutil.copytree(fixture, p)
        with open(f"{p}/model.safetensors", "r+b") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            header = json.loads(f.read(n))
            name = next(k for k, v in header.items()
                        if k != "__metadata__" and v["dtype"] == "F32" and "mlp.down_proj" in k)
            f.seek(8 + n + header[name]["data_offsets"][0])
            f.write(struct.pack("<f", float("nan")))
        c.run("6 numbers", "numbers a NaN in one weight", eval_cmd(p), 1, match="non-finite")
        cfg = dict(config)
        cfg["num_hidden_layers"] = config["num_hidden_layers"] - 1
        p = hf_dir("extra_layer", cfg)
        c.run("6 numbers", "numbers tensors of a layer the config does not declare", eval_cmd(p), 1,
              match="belongs to layer")

    # 5. Metadata that lies
    if sel("metadata"):
        c.run("5 metadata", "metadata export compressed-tensors (for the edits below)",
              run_cmd("--out", "m0", "--set", "save.path=ct", "--set", "save.format=compressed-tensors",
                      "--set", "scheme.weights.group_size=-1"), 0)
        with open(c.path("ct/config.json")) as f:
            ct = json.load(f)
        tok = ["--tokenizer", f"{stories}/tok512.bin", "--data",
               f"{stories}/tinystories_valid_eval.txt", "--seqlen", "64", "--max-windows", "1"]
        c.run("5 metadata", "metadata untouched export evaluates", ["eval", "--model", "ct"] + tok, 0)
        for label, edit in [("symmetric: true", ("symmetric", True)), ("num_bits: 8", ("num_bits", 8)),
                            ("strategy: group, group_size 32", ("strategy", "group"))]:
            edited = json.loads(json.dumps(ct))
            w = edited["quantization_config"]["config_groups"]["group_0"]["weights"]
            w[edit[0]] = edit[1]
            if edit[0] == "strategy":
                w["group_size"] = 32
            d2 = c.path("ct_" + edit[0])
            shutil.copytree(c.path("ct"), d2)
            write(f"{d2}/config.json", json.dumps(edited))
            c.run("5 metadata", f"metadata compressed-tensors edited to {label}",
                  ["eval", "--model", d2] + tok, 1)

    # 7. Resources
    if sel("resources"):
        tiny_eval = ["eval", "--model", f"{stories}/stories260K.bin", "--tokenizer",
                     f"{stories}/tok512.bin", "--data", f"{stories}/tinystories_valid_eval.txt",
                     "--seqlen", "64", "--max-windows", "2"]
        for n in ["2", "64", "100000"]:
            c.run("7 resources", f"resources --threads {n} on eval (2 cores)",
                  ["--threads", n] + tiny_eval, 0, timeout=120)
        big = c.path("big.txt")
        with open(text) as f:
            chunk = f.read()
        with open(big, "w") as f:
            while f.tell() < 200 << 20:
                f.write(chunk)
        c.run("7 resources", "resources eval --max-windows 2 on a 200 MB text (SentencePiece)",
              ["eval", "--model", sotu, "--data", big, "--seqlen", "512", "--max-windows", "2"], 0,
              timeout=300)
        c.run("7 resources", "resources eval --max-windows 2 on a 200 MB text (llama2.c)",
              ["eval", "--model", f"{stories}/stories260K.bin", "--tokenizer", f"{stories}/tok512.bin",
               "--data", big, "--seqlen", "512", "--max-windows", "2"], 0, timeout=300)
        c.run("7 resources", "resources --seqlen 10000000", eval_cmd(fixture, "--seqlen", "10000000"), 1,
              match=r"--seqlen: .* not an integer in 2\.\.")
        c.run("7 resources", "resources --seqlen 100000 beyond the model's positions",
              eval_cmd(fixture, "--seqlen", "100000"), 1,
              match=r"max_position_embeddings")

    # 8. Messages
    if sel("messages"):
        small = ["--seqlen", "64", "--max-windows", "1"]
        c.run("8 messages", "messages --data /dev/zero", ["eval", "--model", fixture] + spm + small +
              ["--data", "/dev/zero"], 1, match="/dev/zero: a character device")
        c.run("8 messages", "messages --data a directory", ["eval", "--model", fixture] + spm + small +
              ["--data", c.work], 1, match="a directory")
        os.mkfifo(c.path("fifo.txt"))
        c.run("8 messages", "messages --data a FIFO", ["eval", "--model", fixture] + spm + small +
              ["--data", c.path("fifo.txt")], 1, timeout=30, match="a FIFO")
        p = hf_dir("shard_fifo", weights=False)
        os.mkfifo(f"{p}/model.safetensors")
        c.run("8 messages", "messages safetensors shard is a FIFO", eval_cmd(p), 1, timeout=30)
        p = hf_dir("shard_dir", weights=False)
        os.makedirs(f"{p}/model.safetensors")
        c.run("8 messages", "messages safetensors shard is a directory", eval_cmd(p), 1)
        p = hf_dir("shard_zero", weights=False)
        os.symlink("/dev/zero", f"{p}/model.safetensors")
        c.run("8 messages", "messages safetensors shard links to /dev/zero", eval_cmd(p), 1, timeout=30)
        c.run("8 messages", "messages --set without =", run_cmd("--set", "scheme"), 1)
        c.run("8 messages", "messages --batch-size -1 (usage error)", ["eval", "--model", fixture,
              "--data", text, "--batch-size", "-1"], 1)
        c.run("8 messages", "messages unknown option (usage error)",
              ["eval", "--model", fixture, "--data", text, "--bogus"], 1, match="bogus")
        p = hf_dir("ctl_config", dict(config, model_type="ll\x1b[31mama\x07"))
        c.run("8 messages", "messages control bytes in config.json model_type", eval_cmd(p), 1)
        write(c.path("bom.json"), "\ufeff" + json.dumps(config))
        p = c.path("bom_config")
        os.makedirs(p)
        shutil.copy(c.path("bom.json"), f"{p}/config.json")
        shutil.copy(f"{fixture}/model.safetensors", p)
        c.run("8 messages", "messages config.json with a UTF-8 BOM (accepted, as JSON readers do)",
              eval_cmd(p), 0)
        os.symlink("loop_b", c.path("loop_a"))
        os.symlink("loop_a", c.path("loop_b"))
        c.run("8 messages", "messages model path is a symlink loop", eval_cmd(c.path("loop_a")), 1)

    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(a.out, exist_ok=True)
    commit = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"],
                            capture_output=True, text=True).stdout.strip()
    report = {"commit": commit, "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "cases": c.results}
    tmp = os.path.join(a.out, "campaign.json.tmp")
    write(tmp, json.dumps(report, indent=2) + "\n")
    os.replace(tmp, os.path.join(a.out, "campaign.json"))
    if not a.only:
        render(report, os.path.join(ROOT, "docs", "robustness_campaign.md"))
    bad = [r for r in c.results if not r["ok"]]
    print(f"hostile campaign: {len(c.results) - len(bad)} of {len(c.results)} as expected")
    return 1 if bad else 0


def render(report, path):
    out = ["# Hostile-input campaign: measured outcomes", "",
           "Generated by `scripts/hostile_campaign.py` (commit " + report["commit"] + ", " +
           report["date"] + "); do not edit by hand. docs/robustness.md states the rules; "
           "each row is one run of `calq` on one crafted input: its exit code (1 = a user error, "
           "one line), the line it printed, wall time and peak resident memory (`/usr/bin/time`).",
           "", "| class | case | exit | s | peak MB | message | as expected |",
           "|---|---|---:|---:|---:|---|:-:|"]
    for r in report["cases"]:
        msg = r["message"].replace("|", "\\|").replace("\n", " ")
        if len(msg) > 220:
            msg = msg[:220] + "…"
        out.append(f"| {r['class']} | {r['name']} | {r['exit']} | {r['wall_s']} | "
                   f"{r['peak_rss_mb']} | `{msg}` | {'yes' if r['ok'] else '**no**'} |")
    tmp = path + ".tmp"
    write(tmp, "\n".join(out) + "\n")
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
