"""The language detector on every message of the classifier corpora and holdouts
(tests/data): how many are sure Spanish, sure English, unsure; the unsure and Spanish
ones are listed with --list for a person to check.  Speed as a ratio against the
classifier on the same texts in the same run (min/median/max of three rounds).
Usage:  .venv/bin/python bench/language_eval.py [--list]
"""
from __future__ import annotations

import argparse
import collections
import pathlib
import statistics
import sys
import time
import tomllib

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.classification import Classifier  # noqa: E402
from gateway.language import detect  # noqa: E402


def texts() -> list[str]:
    found = []
    for path in sorted((ROOT / "tests" / "data").glob("**/*.toml")):
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        for item in data.get("message", []):
            if item.get("text"):
                found.append(item["text"])
    return found


def timed(fn, items) -> float:
    start = time.perf_counter()
    for t in items:
        fn(t)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--list", action="store_true", help="print each Spanish or unsure text")
    args = ap.parse_args()
    items = texts()
    guesses = [(detect(t), t) for t in items]
    counts = collections.Counter((g.language or "none") + (" sure" if g.sure else " unsure")
                                 for g, _ in guesses)
    print(f"messages: {len(items)}")
    for key, n in sorted(counts.items()):
        print(f"  {key:12} {n:5}  ({100 * n / len(items):.1f}%)")
    if args.list:
        for g, t in guesses:
            if g.language != "en" or not g.sure:
                print(f"{g.language} {'sure' if g.sure else 'unsure'} | {' '.join(t.split())[:120]}")
    classifier = Classifier.load(ROOT / "rules")
    ratios = []
    for _ in range(3):
        ours = timed(detect, items)
        peer = timed(lambda t: classifier.classify(t, subject="", context_kind=None), items)
        ratios.append(ours / peer)
    print(f"detect time / classify time: min {min(ratios):.3f}  "
          f"median {statistics.median(ratios):.3f}  max {max(ratios):.3f}")


if __name__ == "__main__":
    main()
