"""The learned triage model at run time: weights read from a gzip'd JSON file, features
computed in pure Python (features.py), a dot product and a softmax.  No training
library is needed here; bench/train_classifier.py writes the file.
"""
from __future__ import annotations

import gzip
import json
import math
import pathlib
from dataclasses import dataclass

from .features import feature_set, label
from .grams import Grams, supports as grams_supported
from .model import CATEGORIES, EMERGENCY, RuleError

NO_GRAMS = (0, 0, 0)  # no character n-gram left out of a vote's features
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
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise RuleError(source, f"model file is not valid: {exc!r}") from None
        if data.get("format") != FORMAT or sorted(self.classes) != sorted(CATEGORIES) or \
                any(len(v) != len(self.classes) for v in self.weights.values()) or \
                len(self.intercept) != len(self.classes):
            raise RuleError(source, f"model file is not a {FORMAT} model for these categories")
        self._emergency = self.classes.index(EMERGENCY)
        self._explains = _explanations(self.weights, len(self.classes))
        # ... and their names as sets: a message's features meet a set faster than a dict
        self._explained = [frozenset(margins) for margins in self._explains]
        try:
            self._packed = {k: _pack(row) for k, row in self.weights.items()}
        except ValueError as exc:
            raise RuleError(source, f"model file is not valid: {exc}") from None
        # The character n-grams tallied per word (grams.py), when their size allows it.
        char = int(self.config.get("char", 4))
        self.grams = Grams(self._packed, char) if grams_supported(char) else None

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
        return self.vote_features(feature_set(text, subject, context, self.config), top)

    def vote_features(self, feats: set[str] | frozenset[str], top: int = 5,
                      extra: set[str] | frozenset[str] = frozenset(),
                      grams: tuple[int, int, int] = NO_GRAMS) -> Vote:
        """The vote over a message's features (`feature_set`) and the *extra* ones (the
        context's), taken as one set without copying *feats*; *grams*: the character
        n-grams left out of *feats*, tallied (`Grams.tally`)."""
        extra = extra - feats if extra else extra
        packed = self._packed
        hits = list(filter(None, map(packed.get, feats)))  # a packed row is never 0
        if extra:
            hits += filter(None, map(packed.get, extra))
        gram_count, gram_hits, gram_total = grams
        count = len(feats) + len(extra) + gram_count
        value = 1.0 / math.sqrt(count) if count else 0.0
        sums = _unpack(sum(hits) + gram_total, len(hits) + gram_hits, len(self.classes))
        scores = [b + value * w for b, w in zip(self.intercept, sums)]
        probs = _softmax(scores)
        best = max(range(len(probs)), key=probs.__getitem__)
        return Vote(self.classes[best], probs[best], probs[self._emergency],
                    dict(zip(self.classes, probs)), self._top_words(feats, extra, best, top))

    def _top_words(self, feats, extra, best: int, top: int) -> tuple[str, ...]:
        """Whole-word features of the message that favour class *best* the most; equal
        margins in name order (no longer in the order of a set, which changed with
        Python's string hashing from one process to the next)."""
        margins, names = self._explains[best], self._explained[best]
        named = feats & names
        if extra:
            named |= extra & names
        out: list[str] = []
        for name in sorted(named, key=lambda name: (-margins[name], name)):
            word = label(name)
            if word not in out:
                out.append(word)
            if len(out) >= top:
                break
        return tuple(out)


def _explanations(weights: dict, n: int) -> list[dict]:
    """For each class: feature -> by how much it favours that class over the others' mean,
    for the features it favours most; only word features staff can read (no character
    n-grams, no very common words)."""
    out: list[dict] = [{} for _ in range(n)]
    for name, row in weights.items():
        if ":" not in name or all(w in _PLAIN for w in name.split(":", 1)[1].split()):
            continue
        best = max(range(n), key=row.__getitem__)
        margin = row[best] - (sum(row) - row[best]) / (n - 1)
        if margin > 0:
            out[best][name] = margin
    return out


# The weights of one feature packed into one integer, SCALE-fold, each shifted by OFFSET
# into its own FIELD-bit slot: summing the matched features is then one C-level sum of
# integers, exact, instead of a Python loop over every class.  Weights stay below
# OFFSET / SCALE = 104 in size (the training script rounds them to 4 decimals); a field
# holds 2**(FIELD - 21) = 2**19 summed features, far more than a message has.
SCALE = 10_000
OFFSET = 1 << 20
FIELD = 40
_MASK = (1 << FIELD) - 1


def _pack(row: list[float]) -> int:
    out = 0
    for i, w in enumerate(row):
        q = round(w * SCALE)
        if not -OFFSET < q < OFFSET:
            raise ValueError(f"weight {w} out of range")
        out |= (q + OFFSET) << (FIELD * i)
    return out


def _unpack(total: int, count: int, n: int) -> list[float]:
    return [(((total >> (FIELD * i)) & _MASK) - count * OFFSET) / SCALE for i in range(n)]


def _softmax(scores: list[float]) -> list[float]:
    m = max(scores)
    exps = [math.exp(s - m) for s in scores]
    total = sum(exps)
    return [e / total for e in exps]
