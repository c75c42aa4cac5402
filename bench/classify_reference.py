"""The classify path as it was before issue 11's speed-up, kept for comparison only.

`feature_set` is the old feature extraction, verbatim; `score` and `decide` are the old
`Classifier.score` and `Classifier.decide` (the text normalised and indexed twice, once
for the rules and once for the confidential markers, an index built for an empty
subject, the features copied into a new set for the vote); `old_matching()` swaps in
the old matching: every free pattern searched with ``regex.search``, the except phrases
matched anew for every match, the old index and candidate terms.  tests/test_classify_speed.py
checks that the new code gives exactly the same features, votes and decisions;
bench/classify_eval.py --timing-only times the two paths in the same run.
"""
from __future__ import annotations

import bisect
import contextlib
import math
import re
from typing import Iterator

from gateway.classification import confidential, index as index_module, matcher, unread
from gateway.classification.combine import combine
from gateway.classification.features import DEFAULT_CONFIG, context_features, label
from gateway.classification.learned import Vote, _softmax, _unpack
from gateway.language import in_other_language
from gateway.classification.matcher import (context_hit, decide as rules_decide,
                                            score_rules, strip_subject_prefixes)
from gateway.classification.text import TermSet, TextIndex, iter_matches, normalize

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
    if not words:  # told in the Subject (a rule of the features, not of their speed)
        norm = _DIGIT.sub("0", normalize(subject or ""))
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


def model_reads(text: str, config: dict | None = None, norm: str | None = None) -> bool:
    """The old `features.model_reads`: the whole text split into words."""
    cfg = config or DEFAULT_CONFIG
    return (len(text) <= int(cfg.get("max_chars", 6000))
            and len(text.split()) >= int(cfg.get("min_words", 0))
            and not in_other_language(normalize(text) if norm is None else norm))


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
    if clf.settings.unread_language_urgent and is_unread(text or ""):
        hits.append(unread.hit(clf.settings.emergency_min_score, text or "", clf.danger))
    feats = None if clf.model is None else frozenset(
        feature_set(text or "", subject, None, clf.model.config))
    seen_all = clf.model is None or model_reads(text or "", clf.model.config)
    return Scored(tuple(hits), feats, seen_all,
                  confidential=find_confidential(clf.markers, text, subject))


def is_unread(text: str, limit: int = 6000) -> bool:
    """The old `unread.is_unread`: every character of the text tested in Python."""
    sample = (text or "")[:limit]
    if sample.isascii():
        return False
    letters = [c for c in sample if c.isalpha()]
    if len(letters) < unread.MIN_LETTERS:
        return False
    wide = [c for c in letters if not c.isascii()]
    foreign = sum(1 for c in wide if not unread._latin(c)) >= unread.FOREIGN_SHARE * len(letters)
    vietnamese = sum(1 for c in wide if unread._base(c) in unread._VIETNAMESE)
    if not (foreign or vietnamese >= unread.VIETNAMESE_SHARE * len(letters)):
        return False
    return unread.marker_words(text, limit) < unread.MAX_READ_WORDS


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
    return combine(hits, clf.settings, vote_features(clf.model, feats), clf.model,
                   scored.model_saw_all)


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


def _in_except(rule, index, start: int, end: int) -> bool:
    """The old `matcher._in_except`: the except phrases matched anew for every match."""
    if rule.excepts is None:
        return False
    return any(m.start() <= start and end <= m.end()
               for m in matcher.iter_matches(rule.excepts, index))


def _index_init(self, text: str) -> None:
    """The old `TextIndex.__init__` (one regex match object per word)."""
    self.text = text
    at: dict[str, list[int]] = {}
    for m in _INDEX_WORDS.finditer(text):
        at.setdefault(m.group(), []).append(m.start())
    self._at = at
    self.words = frozenset(at)
    self._sorted = None
    self._stems = {}
    self._stem_at = {}
    self.heads = frozenset(w[:3] for w in self.words)
    self.memo = {}


_INDEX_WORDS = re.compile(r"\w+")


def _has_stem(self, stem: str) -> bool:
    """The old `TextIndex.has_stem`."""
    if len(stem) >= 3 and stem[:3] not in self.heads:
        return False
    found = self._stems.get(stem)
    if found is None:
        words = self._sorted_words()
        i = bisect.bisect_left(words, stem)
        found = i < len(words) and words[i].startswith(stem)
        self._stems[stem] = found
    return found


def _candidates(self, index) -> Iterator:
    """The old `TermSet.candidates`."""
    yield from self.always
    for word in self.exact_keys & index.words:
        yield from self.exact[word]
    for stem, terms in self.stems.items():
        if index.has_stem(stem):
            yield from terms


_SWAPS = ((index_module, "_search", _search), (matcher, "_in_except", _in_except),
          (index_module.TextIndex, "__init__", _index_init),
          (index_module.TextIndex, "has_stem", _has_stem), (TermSet, "candidates", _candidates))


@contextlib.contextmanager
def old_matching():
    """Within the block, rules and markers match the old way (the same matches)."""
    saved = [(owner, name, getattr(owner, name)) for owner, name, _old in _SWAPS]
    for owner, name, old in _SWAPS:
        setattr(owner, name, old)
    try:
        yield
    finally:
        for owner, name, value in saved:
            setattr(owner, name, value)


def classify_before(clf, text: str, subject: str = "", context_kind: str | None = None):
    """The whole old path: `classify` with the old matching."""
    with old_matching():
        return classify(clf, text, subject, context_kind)
