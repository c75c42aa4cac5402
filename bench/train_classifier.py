"""Train the triage model (logistic regression on word and character n-grams).

Needs the training extra (``pip install -e '.[train]'``: scikit-learn); the gateway
itself runs the model without it.  Reads every labelled file in tests/data/ (see
bench/triage_corpus.py), trains on the training split only, picks the emergency
threshold and the "not confident -> other" cut on the held-out split, prunes tiny
weights and writes gateway/classification/data/triage-model.json.gz.  The file
records the corpus hash; the same corpus gives the same file, byte for byte.

    .venv/bin/python bench/train_classifier.py            # train and write the model
    .venv/bin/python bench/train_classifier.py --check    # exit 1 if the shipped model differs
"""
from __future__ import annotations

import argparse
import gzip
import io
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from gateway.classification.features import DEFAULT_CONFIG, features, model_reads  # noqa: E402
from gateway.classification.learned import DEFAULT_PATH, FORMAT, LearnedModel  # noqa: E402
from gateway.classification.matcher import strip_subject_prefixes  # noqa: E402
from gateway.classification.model import CATEGORIES, EMERGENCY, OTHER  # noqa: E402
from gateway.classification.rules import load_rules  # noqa: E402
from triage_corpus import training_corpus  # noqa: E402

C = 100.0
RULES = ROOT / "rules"
MIN_DF = 2
PRUNE = 0.02  # weights below this (in every class) are dropped
MAX_WEIGHT = 100.0  # the run-time packing holds weights below 104 in size
TARGET_RECALL = 0.99  # emergency recall the threshold must keep on the held-out split
CONFIDENCE_GRID = (0.0, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5)


def sample_features(s, config=DEFAULT_CONFIG) -> dict:
    return features(s.new_text(), strip_subject_prefixes(s.subject), s.context, config)


def fit(train, config=DEFAULT_CONFIG, c=C, class_weight=None):
    """(classes, intercept, {feature: [weights]}) of a model trained on *train*."""
    from scipy.sparse import csr_matrix
    from sklearn.linear_model import LogisticRegression
    rows = [sample_features(s, config) for s in train]
    df: dict[str, int] = {}
    for r in rows:
        for f in r:
            df[f] = df.get(f, 0) + 1
    vocab = {f: i for i, f in enumerate(sorted(f for f, n in df.items() if n >= MIN_DF))}
    data, indices, indptr = [], [], [0]
    for r in rows:
        cols = sorted((vocab[f], v) for f, v in r.items() if f in vocab)
        indices.extend(i for i, _ in cols)
        data.extend(v for _, v in cols)
        indptr.append(len(indices))
    X = csr_matrix((data, indices, indptr), shape=(len(rows), len(vocab)))
    clf = LogisticRegression(C=c, max_iter=5000, class_weight=class_weight)
    clf.fit(X, [s.expected for s in train])
    classes = [str(k) for k in clf.classes_]
    names = sorted(vocab, key=vocab.get)
    weights = {}
    for j, name in enumerate(names):
        col = [float(clf.coef_[k][j]) for k in range(len(classes))]
        if max(abs(x) for x in col) >= PRUNE:
            weights[name] = [round(max(-MAX_WEIGHT, min(MAX_WEIGHT, x)), 4) for x in col]
    return classes, [round(float(x), 4) for x in clf.intercept_], weights


def pick_threshold(votes, held, target=TARGET_RECALL) -> float:
    """The highest emergency threshold that keeps *target* recall on the held-out split."""
    em = sorted(v.emergency for v, s in zip(votes, held) if s.expected == EMERGENCY)
    if not em:
        return 0.5
    allowed_misses = int(len(em) * (1 - target) + 1e-9)
    return round(max(0.01, em[allowed_misses] - 1e-4), 4)


def red_flags(held, rules_dir=RULES) -> list[tuple]:
    """For each held-out message its rule hits, for `red_flag_raises` (the floor and the
    model's probability are applied later)."""
    from gateway.classification.classifier import Classifier
    clf = Classifier.load(rules_dir, use_model=False)
    return [clf.score(s.new_text(), s.subject).hits for s in held]


def pick_combined_threshold(votes, held, hits, settings, target=TARGET_RECALL) -> float:
    """The highest emergency threshold at which the decision the gateway runs (model
    threshold OR a red flag the model does not rule out) keeps *target* recall on the
    held-out split.  Red flags only add recall, so this is never below the threshold the
    model alone would need; it depends on rules/, so retrain after editing red-flag rules."""
    from gateway.classification.combine import red_flag_raises
    raised = [red_flag_raises(h, settings, v.emergency, model_reads(s.new_text()))
              for h, v, s in zip(hits, votes, held)]
    em = [(v.emergency, r) for v, r, s in zip(votes, raised, held) if s.expected == EMERGENCY]
    if not em:
        return 0.5
    need = len(em) * target - 1e-9
    for p in sorted({p for p, _ in em}, reverse=True):
        t = round(max(0.01, p - 1e-4), 4)
        if sum(1 for q, r in em if q >= t or r) >= need:
            return t
    return 0.01


def decide(vote, threshold, min_conf) -> str:
    if vote.emergency >= threshold:
        return EMERGENCY
    ranked = sorted(((p, c) for c, p in vote.probabilities.items() if c != EMERGENCY),
                    reverse=True)
    p, cat = ranked[0]
    return cat if p >= min_conf else OTHER


def pick_confidence(votes, held, threshold) -> float:
    best = max(CONFIDENCE_GRID, key=lambda m: (sum(
        decide(v, threshold, m) == s.expected for v, s in zip(votes, held)), -m))
    return best


def build(target=TARGET_RECALL) -> tuple[dict, list, list]:
    train, held, digest = training_corpus()
    classes, intercept, weights = fit(train)
    data = {"format": FORMAT, "corpus_sha256": digest, "classes": classes,
            "intercept": intercept, "features": DEFAULT_CONFIG, "weights": weights,
            "emergency_threshold": 0.5, "min_confidence": 0.0,
            "trained_on": len(train), "held_out": len(held),
            "held_out_rule": "int(sha256(text).hexdigest(), 16) % 5 == 0"}
    model = LearnedModel(data)
    votes = [model.vote(s.new_text(), strip_subject_prefixes(s.subject), s.context)
             for s in held]
    settings = load_rules(RULES)[1]
    floor = settings.red_flag_model_floor
    data["model_only_threshold"] = pick_threshold(votes, held, target)
    data["emergency_threshold"] = max(data["model_only_threshold"], pick_combined_threshold(
        votes, held, red_flags(held), settings, target))
    data["threshold_rule"] = (f"highest with {target:.0%} emergency recall on the held-out "
                              f"split for the model with the red-flag rules (floor {floor})")
    data["min_confidence"] = pick_confidence(votes, held, data["emergency_threshold"])
    return data, train, held


def serialise(data: dict) -> bytes:
    raw = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, compresslevel=9) as gz:
        gz.write(raw)
    return buf.getvalue()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=pathlib.Path, default=DEFAULT_PATH)
    ap.add_argument("--check", action="store_true",
                    help="retrain and compare with --out; exit 1 when they differ")
    ap.add_argument("--target-recall", type=float, default=TARGET_RECALL)
    args = ap.parse_args(argv)
    data, train, held = build(args.target_recall)
    blob = serialise(data)
    print(f"trained on {len(train)} messages, held out {len(held)}; "
          f"{len(data['weights'])} features kept, {len(blob) / 1024:.0f} KiB; "
          f"emergency threshold {data['emergency_threshold']}, "
          f"min confidence {data['min_confidence']}; corpus {data['corpus_sha256'][:12]}")
    if args.check:
        same = args.out.is_file() and args.out.read_bytes() == blob
        print("shipped model is reproducible" if same else f"{args.out} differs")
        return 0 if same else 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(blob)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
