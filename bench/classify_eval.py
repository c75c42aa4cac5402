"""Evaluate the message classifier on a labelled corpus (default tests/data/corpus/).

Prints accuracy, per-category precision/recall, the confusion matrix, emergency
recall, the messages it got wrong, and the median/p95 time to classify a ~2 KB
message.  Usage:  .venv/bin/python bench/classify_eval.py [--rules DIR] [--corpus PATH] [--quiet]
--corpus takes a directory of *.toml or one file, e.g. the blind held-out set:
    .venv/bin/python bench/classify_eval.py --corpus tests/data/holdout/messages.toml
"""
from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import time
import tomllib
from dataclasses import dataclass

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.classification import CATEGORIES, Classifier, split_reply  # noqa: E402

CORPUS_DIR = ROOT / "tests" / "data" / "corpus"
RULES_DIR = ROOT / "rules"


@dataclass(frozen=True)
class Sample:
    source: str
    text: str
    subject: str
    context: str | None
    expected: str


KEYS = {"text", "subject", "context", "context_kind", "expected", "expect"}


def load_corpus(corpus: pathlib.Path = CORPUS_DIR) -> list[Sample]:
    """Read [[message]] tables from every *.toml in a directory, or from one file.

    Keys: text, subject?, context? (alias context_kind), expected? (alias expect).
    ``expected`` defaults to the file name when that is a category.  Unknown keys
    are an error, so a misspelt key cannot silently drop a label or a context.
    """
    paths = [corpus] if corpus.is_file() else sorted(corpus.glob("*.toml"))
    if not paths:
        raise ValueError(f"no *.toml corpus files in {corpus}")
    samples = []
    for path in paths:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        default = path.stem if path.stem in CATEGORIES else None
        for i, msg in enumerate(data.get("message", []), 1):
            unknown = set(msg) - KEYS
            if unknown:
                raise ValueError(f"{path.name} #{i}: unknown keys {sorted(unknown)}")
            expected = msg.get("expected", msg.get("expect", default))
            if expected not in CATEGORIES:
                raise ValueError(f"{path.name} #{i}: bad or missing expected category")
            context = msg.get("context", msg.get("context_kind"))
            samples.append(Sample(f"{path.name}#{i}", msg["text"], msg.get("subject", ""),
                                  context, expected))
    return samples


def classify_sample(clf: Classifier, s: Sample):
    new_text, _history = split_reply(s.text)
    return clf.classify(new_text, subject=s.subject, context_kind=s.context)


def evaluate(clf: Classifier, samples: list[Sample]) -> dict:
    confusion = {a: {p: 0 for p in CATEGORIES} for a in CATEGORIES}
    wrong = []
    for s in samples:
        result = classify_sample(clf, s)
        confusion[s.expected][result.category] += 1
        if result.category != s.expected:
            wrong.append((s, result))
    total = len(samples)
    correct = sum(confusion[c][c] for c in CATEGORIES)
    per = {}
    for c in CATEGORIES:
        tp = confusion[c][c]
        predicted = sum(confusion[a][c] for a in CATEGORIES)
        actual = sum(confusion[c].values())
        per[c] = (tp / predicted if predicted else 1.0, tp / actual if actual else 1.0, actual)
    return {"total": total, "accuracy": correct / total if total else 0.0,
            "per_category": per, "confusion": confusion, "wrong": wrong,
            "emergency_recall": per["emergency"][1]}


def two_kb_message(samples: list[Sample]) -> str:
    parts, size = [], 0
    for s in samples:
        if s.expected in ("medical_question", "appointment", "billing", "results"):
            parts.append(split_reply(s.text)[0])
            size += len(parts[-1]) + 1
            if size >= 2048:
                break
    return "\n".join(parts)[:2048]


def time_classify(clf: Classifier, text: str, runs: int = 2000) -> tuple[float, float]:
    for _ in range(50):
        clf.classify(text, subject="Question", context_kind="lab_result")
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        clf.classify(text, subject="Question", context_kind="lab_result")
        times.append(time.perf_counter() - t0)
    times.sort()
    return statistics.median(times) * 1000, times[int(len(times) * 0.95)] * 1000


def print_report(res: dict, quiet: bool) -> None:
    abbrev = {c: c[:6] for c in CATEGORIES}
    print(f"messages: {res['total']}   accuracy: {res['accuracy']:.1%}   "
          f"emergency recall: {res['emergency_recall']:.1%}")
    print(f"\n{'category':18} {'precision':>9} {'recall':>7} {'n':>4}")
    for c, (p, r, n) in res["per_category"].items():
        print(f"{c:18} {p:9.1%} {r:7.1%} {n:4d}")
    print("\nconfusion matrix (rows = expected, columns = predicted)")
    print(" " * 18 + " ".join(f"{abbrev[c]:>6}" for c in CATEGORIES))
    for a in CATEGORIES:
        print(f"{a:18}" + " ".join(f"{res['confusion'][a][p]:6d}" for p in CATEGORIES))
    if res["wrong"] and not quiet:
        print("\nmisclassified:")
        for s, r in res["wrong"]:
            text = " ".join(split_reply(s.text)[0].split())[:90]
            print(f"  {s.source}: expected {s.expected}, got {r.category} "
                  f"{r.rule_ids} :: {text}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rules", type=pathlib.Path, default=RULES_DIR)
    ap.add_argument("--corpus", type=pathlib.Path, default=CORPUS_DIR,
                    help="directory of *.toml or a single .toml file (default: training corpus)")
    ap.add_argument("--quiet", action="store_true", help="do not list misclassified messages")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    clf = Classifier.load(args.rules)
    load_ms = (time.perf_counter() - t0) * 1000
    samples = load_corpus(args.corpus)
    res = evaluate(clf, samples)
    print_report(res, args.quiet)
    text = two_kb_message(samples)
    median, p95 = time_classify(clf, text)
    print(f"\nrules: {len(clf.rules)} loaded in {load_ms:.1f} ms")
    print(f"classify a {len(text)}-char message: median {median:.3f} ms, p95 {p95:.3f} ms "
          f"(goal: median < 1 ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
