"""Leave one blind set out: how the triage decision would have scored on each blind set.

For each blind set (tests/data/train/blindN-*-scored.toml, sets 5 and up), a model is
trained on every other message of the training split, its emergency threshold is picked
on the held-out split of the rest (for the decision the gateway runs: the model's
threshold OR a red flag the model does not rule out; and, for comparison, for the model
alone), and the left-out set is scored with the combined decision.  Writers' wording
never crosses from training to test, which random folds cannot promise.  Needs the
training extra (scikit-learn).  Figures summed over the folds:

    .venv/bin/python bench/triage_groupcv.py                       # C=100, floor 0.1
    .venv/bin/python bench/triage_groupcv.py --c 20 --floor 0.05 0.1 0.2 --targets 0.98 0.99
"""
from __future__ import annotations

import argparse
import dataclasses
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import train_classifier as tc  # noqa: E402
from gateway.classification.classifier import Classifier  # noqa: E402
from gateway.classification.combine import combine  # noqa: E402
from gateway.classification.features import DEFAULT_CONFIG, model_reads  # noqa: E402
from gateway.classification.learned import LearnedModel  # noqa: E402
from gateway.classification.matcher import context_hit, strip_subject_prefixes  # noqa: E402
from triage_corpus import TRAINING_SOURCES, _load_file, corpus_files  # noqa: E402

FIRST_SET = 5  # sets 1-2 were written before the labelling guide took its final form


def blind_set(source: str) -> str | None:
    m = re.match(r"blind(\d+)[-_]", source)
    return m.group(1) if m and int(m.group(1)) >= FIRST_SET else None


def load_samples() -> list:
    samples, seen = [], set()
    for path in corpus_files(TRAINING_SOURCES):
        for s in _load_file(path):
            if s.text not in seen:
                seen.add(s.text)
                samples.append(s)
    return samples


class Rules:
    """Rule hits of each message, computed once (they do not depend on the model)."""

    def __init__(self, rules_dir: pathlib.Path):
        self.clf = Classifier.load(rules_dir, use_model=False)
        self.cache: dict = {}

    def hits(self, s) -> tuple[list, bool]:
        if s.source not in self.cache:
            text = s.new_text()
            hits = list(self.clf.score(text, s.subject).hits)
            ctx = context_hit(self.clf.settings, s.context, hits)
            self.cache[s.source] = (hits + ([ctx] if ctx else []), model_reads(text))
        return self.cache[s.source]

    def settings(self, floor: float):
        return dataclasses.replace(self.clf.settings, red_flag_model_floor=floor)


def combined_threshold(rules, votes, held, floor: float, target: float) -> float:
    """The shipped threshold rule (train_classifier.pick_combined_threshold) at *floor*."""
    return tc.pick_combined_threshold(votes, held, [rules.hits(s)[0] for s in held],
                                      rules.settings(floor), target)


def score_fold(rules, model, votes, test, threshold: float, floor: float, min_conf) -> list:
    model.emergency_threshold, model.min_confidence = threshold, min_conf
    settings = rules.settings(floor)
    dec = [combine(list(rules.hits(s)[0]), settings, v, model, rules.hits(s)[1]).category
           for s, v in zip(test, votes)]
    em = [d == "emergency" for d in dec]
    real = [s.expected == "emergency" for s in test]
    return [sum(e and r for e, r in zip(em, real)), sum(real),
            sum(e and not r for e, r in zip(em, real)), len(test) - sum(real),
            sum(d == s.expected for d, s in zip(dec, test)), len(test)]


def _label(key) -> str:
    return key if isinstance(key, str) else f"combined {key[0]:g}, floor {key[1]:g}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--c", type=float, default=tc.C)
    ap.add_argument("--floor", type=float, nargs="+", default=[0.1],
                    help="red_flag_model_floor values to compare (each fold is trained once)")
    ap.add_argument("--targets", type=float, nargs="+", default=[0.98, 0.99, 0.995])
    ap.add_argument("--sets", nargs="+", help="leave out only these blind sets (default: all)")
    args = ap.parse_args(argv)
    samples, rules = load_samples(), Rules(tc.RULES)
    sets = sorted({b for s in samples if (b := blind_set(s.source))}, key=int)
    if args.sets:
        sets = [name for name in sets if name in set(args.sets)]
    keys = ["model alone 0.98"] + [(t, f) for t in args.targets for f in args.floor]
    totals = {k: [0] * 6 for k in keys}
    for name in sets:
        train = [s for s in samples if blind_set(s.source) != name and not s.held_out]
        held = [s for s in samples if blind_set(s.source) != name and s.held_out]
        test = [s for s in samples if blind_set(s.source) == name]
        classes, intercept, weights = tc.fit(train, c=args.c)
        model = LearnedModel({"format": tc.FORMAT, "classes": classes, "intercept": intercept,
                              "features": DEFAULT_CONFIG, "weights": weights,
                              "emergency_threshold": 0.5, "min_confidence": 0.0})
        vote = lambda s: model.vote(s.new_text(), strip_subject_prefixes(s.subject), s.context)  # noqa: E731
        vh, vt = [vote(s) for s in held], [vote(s) for s in test]
        line = []
        for key in totals:
            alone = isinstance(key, str)
            target, floor = (0.98, 0.05) if alone else key
            t = (tc.pick_threshold(vh, held, target) if alone
                 else combined_threshold(rules, vh, held, floor, target))
            fold = score_fold(rules, model, vt, test, t, floor, tc.pick_confidence(vh, held, t))
            totals[key] = [a + b for a, b in zip(totals[key], fold)]
            line.append(f"{_label(key)}: t={t:.2f} R {fold[0]}/{fold[1]} FP {fold[2]}/{fold[3]}")
        print(f"set {name} ({len(test)}): " + "; ".join(line), flush=True)
    print(f"C={args.c:g}; sets {', '.join(sets)}")
    for key, (r, n, fp, neg, ok, total) in totals.items():
        print(f"  {_label(key):26s} recall {r}/{n} = {r / n:.1%}  false positives {fp}/{neg} = "
              f"{fp / neg:.1%}  accuracy {ok / total:.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
