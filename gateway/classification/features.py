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

A message with no new text (everything told in the Subject, "Sent from my iPhone" below)
is read from its Subject: its words make the word, bigram and 4-gram features too.
"""
from __future__ import annotations

import math
import re

from ..language import in_other_language
from .text import normalize

_WORD = re.compile(r"[a-z0-9]+")
_HAS_DIGIT = re.compile(r"[0-9]").search
_ZEROS = str.maketrans("123456789", "000000000")
DEFAULT_CONFIG = {"char": 4, "bigrams": True, "negation": True, "max_chars": 6000,
                  "min_words": 12}


def model_reads(text: str, config: dict | None = None, norm: str | None = None) -> bool:
    """Whether the model reads enough of this new text to overrule a red flag: all of it
    (not longer than ``max_chars``), at least ``min_words`` words of it (a message told
    in the Subject, with "please help" below, the model has hardly read), and in a
    language it learned (not Portuguese, French, Polish...: `language.in_other_language`).
    *norm*: the text already normalised, when the caller has it."""
    cfg = config or DEFAULT_CONFIG
    if len(text) > int(cfg.get("max_chars", 6000)):
        return False
    # At least n words: the first n split off (a long text is not split to the end).
    n = int(cfg.get("min_words", 0))
    if n > 0 and len(text.split(None, n)) < n:
        return False
    return not in_other_language(normalize(text) if norm is None else norm)


_CLAUSE_WORDS = frozenset("but pero however though although".split())
_NEGATION = frozenset("""no not never without dont doesnt didnt isnt arent wasnt havent hasnt
hadnt wont cant cannot nothing none nor sin nunca ni tampoco ningun ninguna hindi wala""".split())
# A negation and the (up to four) words after it, up to the next punctuation mark.
_NEGATED = re.compile(r"(?<![a-z0-9])(?:" + "|".join(sorted(_NEGATION, key=len, reverse=True))
                      + r")((?: [a-z0-9]+){1,4})")


def _words(norm: str) -> list[str]:
    """The words of a normalised text, digits folded to ``0``."""
    return _WORD.findall(norm.translate(_ZEROS) if _HAS_DIGIT(norm) else norm)


def _negated(norm: str, present) -> set[str]:
    """``n:word`` for words that follow a negation in the same clause ("no bleeding");
    *present*: the negations among the words of *norm*."""
    out: set[str] = set()
    for m in _negations(norm, present):
        for w in m.group(1).split():
            if w in _CLAUSE_WORDS:
                break
            if w not in _NEGATION:
                out.add("n:" + w)
    return out


def _negations(norm: str, present):
    """The matches of ``_NEGATED.finditer(norm)``, found faster.  A match starts where a
    negation is a whole word of the text (nothing alphanumeric before it, a space after),
    so only the places where a negation of *present* occurs are tried, from left to right,
    each past the end of the match before (as finditer goes on)."""
    find, starts = norm.find, set()
    for word in present:
        i = find(word)
        while i >= 0:
            starts.add(i)
            i = find(word, i + 1)
    match, pos = _NEGATED.match, 0
    for start in sorted(starts):
        if start >= pos and (m := match(norm, start)) is not None:
            yield m
            pos = m.end()  # never empty: a negation and at least one word


def feature_set(text: str, subject: str = "", context: str | None = None,
                config: dict | None = None) -> set[str]:
    """The distinct features of a message (each has the value 1/sqrt(count))."""
    cfg = config or DEFAULT_CONFIG
    return normalized_feature_set(normalize((text or "")[: int(cfg.get("max_chars", 6000))]),
                                  normalize(subject or ""), context, cfg)


def normalized_feature_set(norm: str, norm_subject: str = "", context: str | None = None,
                           config: dict | None = None) -> set[str]:
    """`feature_set` of a text and subject already normalised (`text.normalize`; the text
    cut to ``max_chars`` before): the classifier shares them with the rules."""
    cfg = config or DEFAULT_CONFIG
    feats, words, _unique = word_features(norm, norm_subject, context, cfg)
    feats.update(char_grams(words, int(cfg.get("char", 4))))
    return feats


def word_features(norm: str, norm_subject: str = "", context: str | None = None,
                  config: dict | None = None) -> tuple[set[str], list[str], set[str]]:
    """The features of `normalized_feature_set` but the character n-grams, and the words
    (digits folded) and their set, from which the n-grams are made (`char_grams`)."""
    cfg = config or DEFAULT_CONFIG
    if _HAS_DIGIT(norm):
        norm = norm.translate(_ZEROS)
    words = _WORD.findall(norm)
    if not words and norm_subject:  # everything told in the Subject: read it as the text
        norm = norm_subject.translate(_ZEROS) if _HAS_DIGIT(norm_subject) else norm_subject
        words = _WORD.findall(norm)
    unique = set(words)
    feats: set[str] = {"w:" + w for w in unique}
    if cfg.get("bigrams", True):
        feats.update([f"b:{a} {b}" for a, b in zip(words, words[1:])])
    if cfg.get("negation") and not _NEGATION.isdisjoint(unique):
        feats.update(_negated(norm, _NEGATION.intersection(unique)))
    feats.update(["s:" + w for w in _words(norm_subject)[:30]])
    feats.update(context_features(context))
    return feats, words, unique


def char_grams(words: list[str], n: int):
    """The character n-grams of the words joined by spaces (made in C: zip and join)."""
    if n <= 0:
        return ()
    joined = " " + " ".join(words) + " "
    return map("".join, zip(*(joined[i:] for i in range(n))))


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
