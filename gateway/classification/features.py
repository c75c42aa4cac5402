"""Features of the learned triage model, in pure Python (the same code trains and runs it).

The text is the one the rules see: the patient's new text and the Subject, normalised
(lower case, no accents or apostrophes), digits folded to ``0`` so "35 weeks" and
"28 weeks" look alike.  Features are binary; their weight is 1/sqrt(count), so a long
message does not outvote a short one:

* ``w:word`` and ``b:word word`` -- word unigrams and bigrams of the new text;
* ``" ble"`` -- character 4-grams of the words joined by single spaces (no prefix:
  a 4-gram never contains ":", so it cannot collide with the prefixed features);
* ``n:word`` -- words up to four after a negation in the same clause ("no bleeding");
* ``s:word`` -- words of the subject (a subject is weaker evidence, kept apart);
* ``x:kind`` -- the kind of portal notification the patient replies to.
"""
from __future__ import annotations

import math
import re

from .text import normalize

_WORD = re.compile(r"[a-z0-9]+")
_DIGIT = re.compile(r"[0-9]")
DEFAULT_CONFIG = {"char": 4, "bigrams": True, "negation": True, "max_chars": 6000}


_CLAUSE_WORDS = frozenset("but pero however though although".split())
_NEGATION = frozenset("""no not never without dont doesnt didnt isnt arent wasnt havent hasnt
hadnt wont cant cannot nothing none nor sin nunca ni tampoco ningun ninguna hindi wala""".split())
# A negation and the (up to four) words after it, up to the next punctuation mark.
_NEGATED = re.compile(r"(?<![a-z0-9])(?:" + "|".join(sorted(_NEGATION, key=len, reverse=True))
                      + r")((?: [a-z0-9]+){1,4})")


def _words(text: str) -> list[str]:
    return _WORD.findall(_DIGIT.sub("0", normalize(text)))


def _negated(norm: str) -> set[str]:
    """``n:word`` for words that follow a negation in the same clause ("no bleeding")."""
    out: set[str] = set()
    for m in _NEGATED.finditer(norm):
        for w in m.group(1).split():
            if w in _CLAUSE_WORDS:
                break
            if w not in _NEGATION:
                out.add("n:" + w)
    return out


def feature_set(text: str, subject: str = "", context: str | None = None,
                config: dict | None = None) -> set[str]:
    """The distinct features of a message (each has the value 1/sqrt(count))."""
    cfg = config or DEFAULT_CONFIG
    norm = _DIGIT.sub("0", normalize((text or "")[: int(cfg.get("max_chars", 6000))]))
    words = _WORD.findall(norm)
    feats: set[str] = {"w:" + w for w in words}
    if cfg.get("bigrams", True):
        feats.update(["b:" + a + " " + b for a, b in zip(words, words[1:])])
    n = int(cfg.get("char", 4))
    if n > 0:
        joined = " " + " ".join(words) + " "
        feats.update({joined[i:i + n] for i in range(len(joined) - n + 1)})
    if cfg.get("negation") and not _NEGATION.isdisjoint(words):
        feats.update(_negated(norm))
    feats.update(["s:" + w for w in _words(subject or "")[:30]])
    feats.update(context_features(context))
    return feats


def context_features(context: str | None) -> set[str]:
    """The feature of the notification a message replies to (none for a new message)."""
    return {"x:" + context.strip().lower()[:40]} if context else set()


def features(text: str, subject: str = "", context: str | None = None,
             config: dict | None = None) -> dict[str, float]:
    """Feature name -> value (1/sqrt(n) for each of the n distinct features)."""
    feats = feature_set(text, subject, context, config)
    return dict.fromkeys(feats, 1.0 / math.sqrt(len(feats))) if feats else {}


def label(feature: str) -> str:
    """A feature as staff read it: the word or words, without the type prefix."""
    kind, sep, body = feature.partition(":")
    if not sep:
        return "~" + feature.strip()
    if kind == "s":
        return "subject:" + body
    if kind == "x":
        return "reply-to:" + body
    return body
