"""The classifier's decisions in this checkout next to another checkout's (default: the
main checkout), on every labelled message in tests/data (every *.toml, blind sets
included), with the same rules and model files (this checkout's): a change meant to make
classify faster must not change a decision.

    .venv/bin/python bench/classify_compare.py [--other /work/main]

For each message: category, urgent, the rule ids in order, who decided, flags, category
scores, the model's probabilities (to 1e-9) and top words.  Exit 1 on any difference.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
TOLERANCE = 1e-9


def decisions(rules_dir: pathlib.Path, model_path: pathlib.Path) -> list[dict]:
    """Every labelled message classified by the `gateway` package first on sys.path."""
    sys.path.insert(1, str(ROOT / "bench"))
    import triage_corpus
    from gateway.classification import Classifier
    clf = Classifier.load(rules_dir, model_path)
    out = []
    for path in triage_corpus.corpus_files([triage_corpus.DATA]):
        for s in triage_corpus._load_file(path):
            c = clf.classify(s.new_text(), s.subject, s.context)
            out.append({"source": s.source, "category": c.category, "urgent": c.urgent,
                        "rules": c.rule_ids, "by": c.decided_by, "flags": list(c.flags),
                        "scores": c.scores,
                        "probabilities": c.model.probabilities if c.model else None,
                        "top": list(c.model.top_words) if c.model else None})
    return out


def differences(mine: list[dict], theirs: list[dict]) -> tuple[list[str], float]:
    """The messages decided differently, and the largest probability difference."""
    if len(mine) != len(theirs):
        return [f"{len(mine)} messages here, {len(theirs)} there"], 0.0
    out, largest = [], 0.0
    for a, b in zip(mine, theirs):
        pa, pb = a.pop("probabilities"), b.pop("probabilities")
        gap = max((abs(pa[k] - pb[k]) for k in pa), default=0.0) if pa and pb else 0.0
        largest = max(largest, gap)
        if a != b or (pa is None) != (pb is None) or (pa and pa.keys() != pb.keys()) \
                or gap > TOLERANCE:
            out.append(f"{a['source']}: {a} != {b}")
    return out, largest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--other", type=pathlib.Path, default=pathlib.Path("/work/main"))
    ap.add_argument("--emit", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    rules_dir, model_path = ROOT / "rules", ROOT / "gateway/classification/data/triage-model.json.gz"
    if args.emit:  # in the other checkout's process: its gateway package, these files
        print(json.dumps(decisions(rules_dir, model_path)))
        return 0
    code = ("import sys; sys.path.insert(0, sys.argv[1]); sys.argv[1:2] = []; "
            f"sys.path.insert(1, {str(ROOT / 'bench')!r}); import classify_compare; "
            "raise SystemExit(classify_compare.main(sys.argv[1:]))")
    other = subprocess.run([sys.executable, "-c", code, str(args.other.resolve()), "--emit"],
                           capture_output=True, text=True, check=True)
    sys.path.insert(0, str(ROOT))
    mine, theirs = decisions(rules_dir, model_path), json.loads(other.stdout)
    diff, largest = differences(json.loads(json.dumps(mine)), theirs)
    for line in diff[:20]:
        print(line)
    print(f"{len(mine)} labelled messages, {len(diff)} with a different decision "
          f"(this checkout vs {args.other}); largest probability difference {largest:.3g}")
    return 1 if diff else 0


if __name__ == "__main__":
    raise SystemExit(main())
