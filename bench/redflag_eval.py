"""Red-flag rules alone: recall on emergencies and false-fire rate on the rest.

Runs only the rules of category ``emergency`` (the red flags that may raise a message
to emergency) over every labelled message that is NOT in the held-out split, and prints
recall on messages labelled emergency and the false-fire rate on all others, with 95 %
Wilson intervals, per corpus and in total, plus which rule ids fired falsely.

Held-out split (never used to write or tune rules): a message is held out when
``int(sha256(text.encode()).hexdigest(), 16) % 5 == 0``.  Those messages are skipped
here and never printed; ``--heldout`` scores only them and prints counts only (for the
final figures: do not tune rules on what it shows).

Usage:
    .venv/bin/python bench/redflag_eval.py [--rules DIR] [--corpus PATH ...] [--list] [--scaling]
--list prints the (non-held-out) misses and false fires, for rule writers.
--scaling times classify() on hostile texts (many negations, history and "what if" markers,
negations inside phrase gaps, numbers) of 10 KB and 400 KB, min/median/max of three, each as
a ratio to one normalize() pass over the same text: a ratio that stays flat as the text
grows means the matcher stays linear.
"""
from __future__ import annotations

import argparse
import collections
import hashlib
import math
import pathlib
import statistics
import sys
import time
import tomllib

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.classification import CATEGORIES, Classifier, split_reply  # noqa: E402
from gateway.classification.model import EMERGENCY  # noqa: E402
from gateway.classification.text import normalize  # noqa: E402

DEFAULT_CORPORA = [ROOT / "tests" / "data" / "corpus", ROOT / "tests" / "data" / "holdout",
                   ROOT / "tests" / "data" / "holdout2", ROOT / "tests" / "data" / "holdout3",
                   pathlib.Path("/work/corpus-new")]
KEYS = {"text", "subject", "context", "context_kind", "expected", "expect", "kind", "lang",
        "html"}


def held_out(text: str) -> bool:
    return int(hashlib.sha256(text.encode()).hexdigest(), 16) % 5 == 0


def _body(msg: dict) -> str:
    text = msg["text"]
    if msg.get("html"):
        from gateway.content.htmltext import html_to_text
        text = html_to_text(text)[0]
    return split_reply(text)[0]


def load(path: pathlib.Path, heldout: bool = False) -> list[dict]:
    """Labelled messages from a *.toml file or a directory of them: the non-held-out
    part, or only the held-out part when *heldout*."""
    paths = [path] if path.is_file() else sorted(path.glob("*.toml"))
    out = []
    for p in paths:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
        default = p.stem if p.stem in CATEGORIES else None
        for i, msg in enumerate(data.get("message", []), 1):
            if set(msg) - KEYS:
                raise ValueError(f"{p}: message #{i}: unknown keys {sorted(set(msg) - KEYS)}")
            expected = msg.get("expected", msg.get("expect", default))
            if expected not in CATEGORIES or held_out(msg["text"]) != heldout:
                continue
            out.append({"source": f"{p.name}#{i}", "expected": expected,
                        "kind": msg.get("kind", ""), "subject": msg.get("subject", ""),
                        "context": msg.get("context", msg.get("context_kind")),
                        "body": _body(msg)})
    return out


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, c - h), min(1.0, c + h)


def fires(clf: Classifier, m: dict) -> list[str]:
    """Ids of the red-flag rules that raise this message to emergency (else [])."""
    r = clf.classify(m["body"], subject=m["subject"])
    red = [h for h in r.hits if h.category == EMERGENCY and h.flag is None]  # flags never raise
    if sum(h.score for h in red) < clf.settings.emergency_min_score:
        return []
    return [h.id for h in red]


def score(clf: Classifier, msgs: list[dict]) -> dict:
    res = {"tp": 0, "pos": 0, "fp": 0, "neg": 0, "missed": [], "false": [],
           "false_rules": collections.Counter()}
    for m in msgs:
        ids = fires(clf, m)
        if m["expected"] == EMERGENCY:
            res["pos"] += 1
            res["tp"] += bool(ids)
            if not ids:
                res["missed"].append(m)
        else:
            res["neg"] += 1
            res["fp"] += bool(ids)
            if ids:
                res["false"].append((m, ids))
                res["false_rules"].update(ids)
    return res


def line(name: str, r: dict) -> str:
    rl, rh = wilson(r["tp"], r["pos"])
    fl, fh = wilson(r["fp"], r["neg"])
    rec = r["tp"] / r["pos"] if r["pos"] else 0.0
    ffr = r["fp"] / r["neg"] if r["neg"] else 0.0
    return (f"{name:22} recall {r['tp']:4d}/{r['pos']:<4d} {rec:6.1%} [{rl:5.1%}-{rh:5.1%}]"
            f"   false-fire {r['fp']:4d}/{r['neg']:<4d} {ffr:6.1%} [{fl:5.1%}-{fh:5.1%}]")


HOSTILE = {
    "negations": "no fever, no bleeding, not pregnant, ",
    "history/what-if": "what if my water breaks with my first in 2019 ",
    "gap negations": "baby not water not broken bleed heavy not bleeding ",
    "numbers": "took 15 pills every 5 min 140/90 100.4 ",
}


def _best3(fn) -> list[float]:
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)


def scaling(clf: Classifier) -> None:
    print("hostile text: classify time / normalize time (min/median/max of 3)")
    for name, unit in HOSTILE.items():
        cells = []
        for size in (10_000, 400_000):
            text = (unit * (size // len(unit) + 1))[:size]
            peer = statistics.median(_best3(lambda: normalize(text)))
            ours = _best3(lambda: clf.classify(text, subject="x"))
            cells.append(f"{size // 1000:4d} KB: " + "/".join(f"{t / peer:.0f}" for t in ours))
        print(f"  {name:18} " + "   ".join(cells))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rules", type=pathlib.Path, default=ROOT / "rules")
    ap.add_argument("--corpus", type=pathlib.Path, action="append")
    ap.add_argument("--list", action="store_true", help="print misses and false fires")
    ap.add_argument("--scaling", action="store_true", help="time hostile texts (linearity)")
    ap.add_argument("--heldout", action="store_true",
                    help="score only the held-out split (counts only, never messages)")
    args = ap.parse_args(argv)
    if args.heldout and args.list:
        ap.error("--list is refused with --heldout: held-out messages are never shown")
    clf = Classifier.load(args.rules)
    if args.scaling:
        scaling(clf)
        return 0
    clf = Classifier([r for r in clf.rules if r.category == EMERGENCY], clf.settings)
    total = {"tp": 0, "pos": 0, "fp": 0, "neg": 0, "false_rules": collections.Counter()}
    for path in args.corpus or DEFAULT_CORPORA:
        if not path.exists():
            continue
        msgs = load(path, args.heldout)
        if not msgs:
            continue
        r = score(clf, msgs)
        print(line(path.name, r))
        for key in ("tp", "pos", "fp", "neg", "false_rules"):
            total[key] += r[key]
        if args.list:
            for m in r["missed"]:
                print(f"   MISS {m['source']}: {' '.join(m['body'].split())[:160]}")
            for m, ids in r["false"]:
                print(f"   FALSE {m['source']} ({m['expected']}) {ids}: "
                      f"{' '.join(m['body'].split())[:160]}")
    print(line("TOTAL (held out)" if args.heldout else "TOTAL (not held out)", total))
    if total["false_rules"] and not args.heldout:
        print("false fires by rule: " + ", ".join(
            f"{k}={v}" for k, v in total["false_rules"].most_common()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
