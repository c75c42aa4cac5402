"""The classify path as it was before issue 11's speed-up, kept for comparison only.

`feature_set` is the old feature extraction, verbatim; `score` and `decide` are the old
`Classifier.score` and `Classifier.decide` (the text normalised and indexed twice, once
for the rules and once for the confidential markers, an index built for an empty
subject, the features copied into a new set for the vote); `_search` is the old search
of a free pattern (always ``regex.search``), which `old_search()` swaps in.  tests/test_classify_speed.py
checks that the new code gives exactly the same features, votes and decisions;
bench/classify_eval.py --timing-only times the two paths in the same run.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import re
from typing import Iterator

from gateway.classification import confidential, index as index_module
from gateway.classification.combine import combine
from gateway.classification.features import DEFAULT_CONFIG, context_features, label
from gateway.classification.learned import Vote, _softmax, _unpack
from gateway.classification.matcher import (context_hit, decide as rules_decide,
                                            score_rules, strip_subject_prefixes)
from gateway.classification.text import TextIndex, iter_matches, normalize

_WORD = re.compile(r"[a-z0-9]+")
_DIGIT = re.compile(r"[0-9]")
_CLAUSE_WORDS = frozenset("but pero however though although".split())
_NEGATION = frozenset("""no not never without dont doesnt didnt isnt arent wasnt havent hasnt
hadnt wont cant cannot nothing none nor sin nunca ni tampoco ningun ninguna hindi wala""".split())
_NEGATED = re.compile(r"(?<![a-z0-9])(?:" + "|".join(sorted(_NEGATION, key=len, reverse=True))
                      + r")((?: [a-z0-9]+){1,4})")


def _words(text: str) -> list[str]:
    return _WORD.findall(_DIGIT.sub("0", normalize(text)))


def _negated(norm: str) -> set[str]:
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
    """The old extraction (gateway/classification/features.py before the speed-up)."""
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


def vote_features(model, feats: set[str], top: int = 5) -> Vote:
    """The old `LearnedModel.vote_features`."""
    packed = model._packed
    hits = list(filter(None, map(packed.get, feats)))
    value = 1.0 / math.sqrt(len(feats)) if feats else 0.0
    sums = _unpack(sum(hits), len(hits), len(model.classes))
    scores = [b + value * w for b, w in zip(model.intercept, sums)]
    probs = _softmax(scores)
    best = max(range(len(probs)), key=probs.__getitem__)
    margins = model._explains[best]
    out: list[str] = []
    for name in sorted(feats & margins.keys(), key=margins.get, reverse=True):
        word = label(name)
        if word not in out:
            out.append(word)
        if len(out) >= top:
            break
    return Vote(model.classes[best], probs[best], probs[model._emergency],
                dict(zip(model.classes, probs)), tuple(out))


def score(clf, text: str, subject: str = ""):
    """The old `Classifier.score`."""
    from gateway.classification.classifier import Scored
    subject = strip_subject_prefixes(subject or "")
    hits = score_rules(clf.rules, clf.settings, normalize(text or ""), normalize(subject))
    feats = None if clf.model is None else frozenset(
        feature_set(text or "", subject, None, clf.model.config))
    seen_all = clf.model is None or len(text or "") <= int(
        clf.model.config.get("max_chars", 6000))
    return Scored(tuple(hits), feats, seen_all,
                  confidential=find_confidential(clf.markers, text, subject))


def find_confidential(markers, *texts: str) -> tuple[str, ...]:
    """The old `confidential.find`: every text (even an empty one) indexed anew."""
    found = set()
    for text in texts:
        index = TextIndex(normalize(text or ""))
        found.update(m.topic for m in markers if m.topic not in found and _found(m, index))
    return tuple(t for t in confidential.TOPICS if t in found)


def _found(marker, index) -> bool:
    spans = [] if marker.excepts is None else [
        (m.start(), m.end()) for m in iter_matches(marker.excepts, index)]
    return any(not any(s <= m.start() and m.end() <= e for s, e in spans)
               for m in iter_matches(marker.terms, index))


def decide(clf, scored, context_kind: str | None = None):
    """The old `Classifier.decide`."""
    hits = list(scored.hits)
    ctx = context_hit(clf.settings, context_kind, hits)
    if ctx is not None:
        hits.append(ctx)
    if clf.model is None:
        return rules_decide(hits, clf.settings)
    feats = set(scored.features or ())
    feats.update(context_features(context_kind))
    settings = clf.settings if scored.model_saw_all else dataclasses.replace(
        clf.settings, red_flag_model_floor=0.0)
    return combine(hits, settings, vote_features(clf.model, feats), clf.model)


def classify(clf, text: str, subject: str = "", context_kind: str | None = None):
    """The old `Classifier.classify`."""
    return decide(clf, score(clf, text, subject), context_kind)


def _search(regex: re.Pattern, bounded: bool, text: str) -> Iterator[re.Match]:
    """The old `gateway.classification.index._search`."""
    skip, pos = index_module._first_chars(regex), 0
    while True:
        if skip is not None:
            ahead = skip.search(text, pos)
            if ahead is None:
                return
            pos = ahead.start()
        m = regex.search(text, pos)
        if m is None:
            return
        start = m.start()
        if bounded and start > 0 and index_module._is_word_char(text[start - 1]) \
                and start < len(text) and index_module._is_word_char(text[start]):
            pos = start + 1
            continue
        yield m
        pos = m.end() if m.end() > start else start + 1
        if pos > len(text):
            return


@contextlib.contextmanager
def old_search():
    """Within the block, free patterns are searched the old way."""
    saved, index_module._search = index_module._search, _search
    try:
        yield
    finally:
        index_module._search = saved


def classify_before(clf, text: str, subject: str = "", context_kind: str | None = None):
    """The whole old path: `classify` with the old search of free patterns."""
    with old_search():
        return classify(clf, text, subject, context_kind)
