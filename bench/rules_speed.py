"""Rule matching time: the one-pass index against the old matcher, in the same run.

Classifies (rules only; the learned model is not involved in matching) a 2 KB and a
200 KB message, each of two kinds: the bench/inbound.py message (one sentence repeated)
and real patient text (the labelled messages of tests/data joined).  For each it prints
the CPU milliseconds of one classification, min/median/max of three runs, with the old
matcher (bench/rules_reference.py: every candidate phrase searched the whole text) and
the new, runs interleaved, and the ratio of the medians.

    .venv/bin/python bench/rules_speed.py
"""
from __future__ import annotations

import pathlib
import statistics
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from gateway.classification import Classifier  # noqa: E402
import rules_reference  # noqa: E402
import triage_corpus  # noqa: E402

LINE = "I would like to reschedule my appointment next week if possible. "
RUNS = 3


def texts() -> dict[str, str]:
    real = " ".join(s.text for s in triage_corpus.load_corpus(triage_corpus.DATA))
    return {"2 KB sentence": (LINE * 40)[:2_000], "200 KB sentence": (LINE * 4_000)[:200_000],
            "2 KB patients": real[:2_000], "200 KB patients": real[:200_000]}


def cpu_ms(clf: Classifier, text: str, repeat: int) -> float:
    """CPU time of one classification (mean of `repeat`), this thread only."""
    started = time.thread_time()
    for _ in range(repeat):
        clf.classify(text, subject="Appointment question")
    return (time.thread_time() - started) * 1000 / repeat


def main() -> None:
    clf = Classifier.load(ROOT / "rules", use_model=False)
    print(f"{'message':<16} {'old ms min/med/max':>22} {'new ms min/med/max':>22} {'speed-up':>9}")
    for name, text in texts().items():
        repeat = 50 if len(text) < 10_000 else 1
        clf.classify(text)  # warm caches (compiled patterns) for both
        old, new = [], []
        for _ in range(RUNS):
            with rules_reference.reference():
                old.append(cpu_ms(clf, text, repeat))
            new.append(cpu_ms(clf, text, repeat))
        print(f"{name:<16} {_mmm(old):>22} {_mmm(new):>22} "
              f"{statistics.median(old) / statistics.median(new):>8.1f}x")


def _mmm(xs: list[float]) -> str:
    return f"{min(xs):.2f}/{statistics.median(xs):.2f}/{max(xs):.2f}"


if __name__ == "__main__":
    main()
