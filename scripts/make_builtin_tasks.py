#!/usr/bin/env python3
"""Builds calq's built-in zero-shot tasks from the texts the repository ships (docs/tasks.md
"Built-in tasks"), deterministically (seed 0), into data/tasks/*.jsonl; the definitions are
configs/tasks/{sotu,tinystories}_*.yaml. Held-out text only: sotu_valid.txt and
tinystories_valid_eval.txt, never the calibration texts.

  *_next_sentence  multiple choice: a sentence, then the sentence that followed it in the text
                   against three sentences drawn from elsewhere (acc, acc_norm).
  *_cloze          greedy match, LAMBADA's last_word form: a passage whose last word the model
                   must produce greedily (acc) — a hard test for a model of a few million weights.

Usage: scripts/make_builtin_tasks.py [--docs 200]
"""
import argparse
import json
import os
import random
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCES = {
    "sotu": os.path.join(ROOT, "data", "sotu-llama-6L", "sotu_valid.txt"),
    "tinystories": os.path.join(ROOT, "data", "stories260K", "tinystories_valid_eval.txt"),
}


def sentences(path):
    text = open(path, encoding="utf-8").read()
    out = []
    for para in text.split("\n"):
        for s in re.split(r"(?<=[.!?])\s+(?=[A-Z\"])", para.strip()):
            out.append(" ".join(s.split()))
    return out


def usable(s, lo, hi):
    n = len(s.split())
    return lo <= n <= hi and s.isascii()


def write(path, rows):
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(path + ".tmp", path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=200)
    a = ap.parse_args()
    out_dir = os.path.join(ROOT, "data", "tasks")
    os.makedirs(out_dir, exist_ok=True)
    for name, path in SOURCES.items():
        rng = random.Random(0)
        sents = sentences(path)
        pairs = [(sents[i], sents[i + 1]) for i in range(len(sents) - 1)
                 if usable(sents[i], 6, 40) and usable(sents[i + 1], 6, 40)]
        pool = [s for s in sents if usable(s, 6, 40)]
        rng.shuffle(pairs)
        rows = []
        for context, true in pairs[:a.docs]:
            others = set()
            while len(others) < 3:
                s = rng.choice(pool)
                if s not in (context, true):
                    others.add(s)
            choices = [true] + sorted(others)
            rng.shuffle(choices)
            rows.append({"context": context, "choices": choices, "gold": choices.index(true)})
        write(os.path.join(out_dir, f"{name}_next_sentence.jsonl"), rows)
        cloze = [s for s in pool if usable(s, 10, 40) and re.fullmatch(r"[A-Za-z]+[.!?]?", s.split()[-1])]
        rng.shuffle(cloze)
        # The last word without its closing punctuation, as LAMBADA's passages end.
        write(os.path.join(out_dir, f"{name}_cloze.jsonl"),
              [{"text": s.rstrip(".!?")} for s in cloze[:a.docs]])
        print(f"{name}: {len(rows)} next-sentence, {min(len(cloze), a.docs)} cloze documents")


if __name__ == "__main__":
    main()
