"""The learned triage model at run time: weights read from a gzip'd JSON file, features
computed in pure Python (features.py), a dot product and a softmax.  No training
library is needed here; bench/train_classifier.py writes the file.
"""
from __future__ import annotations

import gzip
import heapq
import json
import math
import pathlib
from dataclasses import dataclass

from .features import features, label
from .model import CATEGORIES, EMERGENCY, RuleError

DEFAULT_PATH = pathlib.Path(__file__).resolve().parent / "data" / "triage-model.json.gz"
FORMAT = "portal-triage-logreg-1"
# Words too common to explain anything to staff (the model still uses them).
_PLAIN = frozenset("""a an and are as at be been but by can could do does for from had has
have hi i im in is it its just me my of on or so that the this to was we were what when
will with would you your 0 00 000 0000 00000 ok thanks thank please hello dear
el la los las de del y o en que por para con mi me es un una se lo le al no si""".split())


@dataclass(frozen=True)
class Vote:
    """What the model says about one message."""

    category: str  # the most probable category
    probability: float  # its probability
    emergency: float  # probability of `emergency`
    probabilities: dict
    top_words: tuple[str, ...]  # features that pushed hardest towards `category`


class LearnedModel:
    def __init__(self, data: dict, source: str = "(model)"):
        self.source = source
        try:
            self.classes = list(data["classes"])
            self.intercept = [float(x) for x in data["intercept"]]
            self.weights = {k: [float(x) for x in v] for k, v in data["weights"].items()}
            self.config = dict(data.get("features", {}))
            self.emergency_threshold = float(data["emergency_threshold"])
            self.min_confidence = float(data.get("min_confidence", 0.0))
            self.corpus_sha256 = str(data.get("corpus_sha256", ""))
        except (KeyError, TypeError, ValueError) as exc:
            raise RuleError(source, f"model file is not valid: {exc!r}") from None
        if data.get("format") != FORMAT or sorted(self.classes) != sorted(CATEGORIES) or \
                any(len(v) != len(self.classes) for v in self.weights.values()) or \
                len(self.intercept) != len(self.classes):
            raise RuleError(source, f"model file is not a {FORMAT} model for these categories")
        self._emergency = self.classes.index(EMERGENCY)

    @classmethod
    def load(cls, path: pathlib.Path = DEFAULT_PATH) -> "LearnedModel":
        try:
            with gzip.open(path, "rt", encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, ValueError, EOFError) as exc:
            raise RuleError(str(path), f"cannot read model file: {exc}") from None
        return cls(data, str(path))

    def vote(self, text: str, subject: str = "", context: str | None = None,
             top: int = 5) -> Vote:
        feats = features(text, subject, context, self.config)
        weights = self.weights
        used = [(name, weights[name]) for name in feats if name in weights]
        value = next(iter(feats.values()), 0.0)  # every feature has the same value
        scores = list(self.intercept)
        if used:
            sums = [sum(col) for col in zip(*(row for _, row in used))]
            scores = [b + value * w for b, w in zip(scores, sums)]
        n = len(scores)
        probs = _softmax(scores)
        best = max(range(n), key=probs.__getitem__)
        return Vote(self.classes[best], probs[best], probs[self._emergency],
                    dict(zip(self.classes, probs)), _top_words(used, best, top))


def _softmax(scores: list[float]) -> list[float]:
    m = max(scores)
    exps = [math.exp(s - m) for s in scores]
    total = sum(exps)
    return [e / total for e in exps]


def _top_words(used: list, best: int, top: int) -> tuple[str, ...]:
    """Whole-word features that favour class *best* over the others the most."""
    k = len(used[0][1]) - 1 if used else 1

    def margin(item):
        row = item[1]
        return row[best] * (1 + 1 / k) - sum(row) / k

    words = [item for item in used if ":" in item[0]]  # not the character n-grams
    out: list[str] = []
    for item in heapq.nlargest(top * 4, words, key=margin):
        word = label(item[0])
        if all(w in _PLAIN for w in word.split(":")[-1].split()):
            continue
        if margin(item) > 0 and word not in out and len(out) < top:
            out.append(word)
    return tuple(out)
