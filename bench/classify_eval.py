"""Evaluate the message classifier on labelled messages.

Without --corpus: the held-out split of every labelled file in tests/data/ (never used
for training; see bench/triage_corpus.py).  With --corpus PATH (a directory of *.toml,
searched recursively, or one file): every message in it, e.g. a blind set.

For each decision mode (rules only, learned model only, combined = what the gateway
runs) it prints accuracy, emergency recall and the emergency false-positive rate, each
with a 95 % Wilson interval; then, for --mode (default combined), per-category
precision/recall, the confusion matrix and the misclassified messages; then the time
to classify a ~2 KB message, rules only vs combined, each also the way it was before
issue 11's speed-up (bench/classify_reference.py), measured in the same run.

    .venv/bin/python bench/classify_eval.py                       # held-out split
    .venv/bin/python bench/classify_eval.py --corpus /path/to/blind-set --quiet
    .venv/bin/python bench/classify_eval.py --timing-only           # only the timing
"""
from __future__ import annotations

import argparse
import functools
import math
import os
import pathlib
import statistics
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from gateway.classification import CATEGORIES, Classifier  # noqa: E402
from gateway.classification.learned import DEFAULT_PATH, LearnedModel  # noqa: E402
from gateway.classification import danger  # noqa: E402
from gateway.classification.rules import load_rules  # noqa: E402
import classify_reference  # noqa: E402
import triage_corpus  # noqa: E402
from triage_corpus import Sample, training_corpus  # noqa: E402

CORPUS_DIR = ROOT / "tests" / "data" / "corpus"
RULES_DIR = ROOT / "rules"
MODES = ("rules", "model", "combined")


def load_corpus(corpus=CORPUS_DIR) -> list[Sample]:
    return triage_corpus.load_corpus(corpus)


def classifiers(rules_dir=RULES_DIR, model_path=DEFAULT_PATH) -> dict:
    rules, settings = load_rules(pathlib.Path(rules_dir))
    model = LearnedModel.load(model_path)
    words = danger.load(pathlib.Path(rules_dir))  # unread languages' danger words
    return {"rules": Classifier(rules, settings, None, (), words),
            "model": Classifier([], settings, model, (), words),
            "combined": Classifier(rules, settings, model, (), words)}


def classify_sample(clf: Classifier, s: Sample):
    return clf.classify(s.new_text(), subject=s.subject, context_kind=s.context)


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


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
    em_n = sum(confusion["emergency"].values())
    em_tp = confusion["emergency"]["emergency"]
    fp = sum(confusion[a]["emergency"] for a in CATEGORIES if a != "emergency")
    return {"total": total, "correct": correct, "accuracy": correct / total if total else 0.0,
            "per_category": per, "confusion": confusion, "wrong": wrong,
            "emergency_recall": em_tp / em_n if em_n else 1.0, "emergency_n": em_n,
            "emergency_tp": em_tp, "false_emergencies": fp, "non_emergency_n": total - em_n,
            "fp_rate": fp / (total - em_n) if total > em_n else 0.0}


def _ci(k: int, n: int) -> str:
    lo, hi = wilson(k, n)
    return f"{k / n if n else 0:6.1%} [{lo:5.1%}-{hi:5.1%}] ({k}/{n})"


def print_summary(results: dict) -> None:
    print(f"{'mode':9} {'accuracy':32} {'emergency recall':32} {'false-positive rate':30}")
    for mode, r in results.items():
        print(f"{mode:9} {_ci(r['correct'], r['total']):32} "
              f"{_ci(r['emergency_tp'], r['emergency_n']):32} "
              f"{_ci(r['false_emergencies'], r['non_emergency_n'])}")


def print_report(res: dict, quiet: bool) -> None:
    print(f"\n{'category':18} {'precision':>9} {'recall':>7} {'n':>4}")
    for c, (p, r, n) in res["per_category"].items():
        print(f"{c:18} {p:9.1%} {r:7.1%} {n:4d}")
    print("\nconfusion matrix (rows = expected, columns = predicted)")
    print(" " * 18 + " ".join(f"{c[:6]:>6}" for c in CATEGORIES))
    for a in CATEGORIES:
        print(f"{a:18}" + " ".join(f"{res['confusion'][a][p]:6d}" for p in CATEGORIES))
    raised: dict[str, int] = {}
    for s, r in res["wrong"]:
        if r.category == "emergency" and r.decided_by == "red-flag":
            for h in r.hits:
                if h.category == "emergency" and h.flag is None and not h.id.startswith("model-"):
                    raised[h.id] = raised.get(h.id, 0) + 1
    if raised:
        print("\nred-flag rules that raised a non-emergency (fix or remove them):")
        for rid, n in sorted(raised.items(), key=lambda kv: -kv[1]):
            print(f"  {rid}: {n}")
    if res["wrong"] and not quiet:
        print("\nmisclassified:")
        for s, r in res["wrong"]:
            text = " ".join(s.new_text().split())[:90]
            print(f"  {s.source}: expected {s.expected}, got {r.category} "
                  f"({r.decided_by}) {r.rule_ids[:4]} :: {text}")


def two_kb_message(samples: list[Sample]) -> str:
    parts, size = [], 0
    for s in samples:
        if s.expected in ("medical_question", "appointment", "billing", "results"):
            parts.append(s.new_text())
            size += len(parts[-1]) + 1
            if size >= 2048:
                break
    return "\n".join(parts)[:2048]


def time_classify(classify, text: str, runs: int = 500) -> tuple[float, float]:
    """(median, p95) CPU milliseconds of one classify: CPU time of this thread, so a busy
    machine that preempts the benchmark does not count as classify time."""
    for _ in range(20):
        classify(text, subject="Question", context_kind="lab_result")
    times = []
    for _ in range(runs):
        t0 = time.thread_time()
        classify(text, subject="Question", context_kind="lab_result")
        times.append(time.thread_time() - t0)
    times.sort()
    return statistics.median(times) * 1000, times[int(len(times) * 0.95)] * 1000


def timed_paths(clfs: dict) -> dict:
    """What is timed: rules only and combined, each now and as before issue 11's speed-up
    (bench/classify_reference.py: the same decisions, reached the old way)."""
    return {"rules": clfs["rules"].classify, "combined": clfs["combined"].classify,
            "rules-before": functools.partial(classify_reference.classify_before,
                                              clfs["rules"]),
            "combined-before": functools.partial(classify_reference.classify_before,
                                                 clfs["combined"])}


def print_timing(clfs: dict, text: str) -> None:
    """Every path, interleaved (three rounds), so all see the same load."""
    paths = timed_paths(clfs)
    print(f"\nclassify a {len(text)}-char message (CPU ms; min/median/max of 3 interleaved "
          "runs of 500):")
    runs: dict[str, list] = {mode: [] for mode in paths}
    for _ in range(3):
        for mode, classify in paths.items():
            runs[mode].append(time_classify(classify, text))
    for mode, got in runs.items():
        med = sorted(r[0] for r in got)
        p95 = sorted(r[1] for r in got)
        print(f"  {mode:15} median {med[0]:.3f}/{med[1]:.3f}/{med[2]:.3f}  "
              f"p95 {p95[0]:.3f}/{p95[1]:.3f}/{p95[2]:.3f}")
    for top, bottom in (("combined", "rules"), ("combined-before", "combined"),
                        ("rules-before", "rules")):
        ratios = sorted(a[0] / b[0] for a, b in zip(runs[top], runs[bottom]))
        print(f"  {top} / {bottom} median ratio: "
              f"{ratios[0]:.2f}/{ratios[1]:.2f}/{ratios[2]:.2f}")
    size = DEFAULT_PATH.stat().st_size
    print(f"  model file {size / 1024:.0f} KiB, {len(clfs['model'].model.weights)} features")
    print(f"  load: {_load()}")


def _load() -> str:
    try:
        return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rules", type=pathlib.Path, default=RULES_DIR)
    ap.add_argument("--corpus", type=pathlib.Path, default=None,
                    help="directory of *.toml or one .toml file (default: held-out split)")
    ap.add_argument("--mode", choices=MODES, default="combined",
                    help="the mode whose details are printed (default: combined)")
    ap.add_argument("--quiet", action="store_true", help="do not list misclassified messages")
    ap.add_argument("--no-timing", action="store_true")
    ap.add_argument("--timing-only", action="store_true",
                    help="only time classify of the ~2 KB message (no evaluation)")
    args = ap.parse_args(argv)
    clfs = classifiers(args.rules)
    if args.corpus is None:
        samples, name = training_corpus()[1], "held-out split of tests/data"
    else:
        samples, name = load_corpus(args.corpus), str(args.corpus)
    if args.timing_only:
        print_timing(clfs, two_kb_message(samples))
        return 0
    print(f"{name}: {len(samples)} messages, "
          f"{sum(s.expected == 'emergency' for s in samples)} emergencies\n")
    results = {mode: evaluate(clfs[mode], samples) for mode in MODES}
    print_summary(results)
    print(f"\ndetails for mode {args.mode}:")
    print_report(results[args.mode], args.quiet)
    if not args.no_timing:
        print_timing(clfs, two_kb_message(samples))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
