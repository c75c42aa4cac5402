"""Rule matching reads the text once and gives exactly the results of the old matcher.

The old matcher (every candidate term searched the whole text; kept in
bench/rules_reference.py) and the one-pass index (gateway.classification.index) must
agree on every message of the labelled corpus, on long texts, and on hostile texts made
of the rules' own words and separators: same category, same rule ids, same scores.
"""
from __future__ import annotations

import random
import re
import sys
import time
import tomllib

import pytest

from gateway.classification import Classifier
from gateway.classification.firstchar import first_chars
from gateway.classification.index import TextIndex, _search, iter_term_matches
from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import rules_reference  # noqa: E402
import triage_corpus  # noqa: E402


@pytest.fixture(scope="module")
def clf() -> Classifier:
    return Classifier.load(ROOT / "rules", use_model=False)


@pytest.fixture(scope="module")
def corpus() -> list[tuple[str, str, str | None]]:
    samples = triage_corpus.load_corpus(triage_corpus.DATA)  # every tests/data/**.toml
    return [(s.new_text(), s.subject, s.context) for s in samples]


def outcome(c) -> tuple:
    return c.category, [(h.id, h.score, h.reason) for h in c.hits], sorted(c.scores.items())


def both(clf: Classifier, text: str, subject: str = "", context=None) -> tuple:
    new = outcome(clf.classify(text, subject=subject, context_kind=context))
    with rules_reference.reference():
        old = outcome(clf.classify(text, subject=subject, context_kind=context))
    return old, new


def test_the_whole_corpus_classifies_as_before(clf, corpus):
    assert len(corpus) > 2000
    differ = []
    for text, subject, context in corpus:
        old, new = both(clf, text, subject, context)
        if old != new:
            differ.append((text[:60], old, new))
    assert differ == []


def test_the_subject_path_classifies_as_before(clf, corpus):
    # subject hits count only when the text does not tell the same words negated
    for text, subject, _context in corpus[::7]:
        old, new = both(clf, subject or text[:80], text[:300])
        assert old == new


def test_long_texts_classify_as_before(clf, corpus):
    joined = " ".join(text for text, _s, _c in corpus)
    for start in range(0, 200_000, 40_000):
        old, new = both(clf, joined[start:start + 40_000])
        assert old == new
        assert new[1], "a long text of patient messages matches rules"


VOCAB_SEPARATORS = [" ", " ", " ", "-", "/", " - ", ", ", ". ", "_", "", "  "]


def hostile_texts(clf: Classifier, n: int, seed: int = 14) -> list[str]:
    """Texts made only of words the rules start with or need, joined by the phrase
    separators and by characters that must not join words: overlapping, repeated and
    cut-off phrases, words glued to other words, at the very start and end."""
    rng = random.Random(seed)
    words = sorted({w for r in clf.rules for t in r.terms.terms if t.first
                    for w in (t.first, *(a for a, _stem in t.also))})
    words += ["not", "no", "what if", "last year", "38", "101.5", "$5", "2 weeks", "é", "1ª"]
    texts = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 120)):
            parts.append(rng.choice(words) + rng.choice(["", "", "", "s", "ing", "ed", "x"]))
            parts.append(rng.choice(VOCAB_SEPARATORS))
        texts.append("".join(parts))
    return texts


def test_hostile_word_salads_classify_as_before(clf):
    for text in hostile_texts(clf, 400):
        old, new = both(clf, text, subject=text[:40])
        assert old == new, text


def overlapping_phrases() -> list[str]:
    """Each rule phrase written so that its first word comes again inside its own match
    ("bleeding bleeding heavy clots"), stems cut and extended, at the start and the end."""
    texts = []
    for path in sorted((ROOT / "rules").glob("*.toml")):
        for rule in tomllib.loads(path.read_text()).get("rule", []):
            for phrase in rule.get("phrases", []) + rule.get("requires", []):
                words = phrase.replace("*", "ing").replace("...", "a b").split()
                texts.append(" ".join(words[:1] + words + words[1:2] + words))
    return [" ".join(texts[i:i + 40]) for i in range(0, len(texts), 40)]


def test_every_term_finds_the_same_matches_in_the_same_order(clf):
    """Below the scores: each rule's term matches (start, end, term) are identical."""
    termsets = {id(ts): ts for r in clf.rules
                for ts in (r.terms, r.requires, r.excepts, r.situation) if ts is not None}
    for text in overlapping_phrases() + hostile_texts(clf, 60, seed=3):
        index = TextIndex(" ".join(text.split()))
        for ts in termsets.values():
            new = [(id(t), m.span()) for t, m in iter_term_matches(ts, index)]
            old = [(id(t), m.span()) for t, m in rules_reference.iter_term_matches(ts, index)]
            assert new == old


@pytest.mark.parametrize("pattern", [
    r"(?<!hace )\b\d{1,2} ?weeks?\b", r"\$ ?\d", r"(now|switched to)\b.{0,5}\bx",
    r"[^a]b", r"(a|)b", r"a?b", r"\bx*", r"(?=b)b", r"^b", r"\Bb", r"(?i)b"])
def test_skipping_to_a_first_character_finds_every_match(pattern):
    """The skip ahead of free patterns (look-behinds first) never misses a match."""
    rx = re.compile(pattern)
    rng = random.Random(pattern)
    for _ in range(300):
        text = "".join(rng.choice(["a", "b", "x", " ", "1", "23", "$", "hace ", "weeks", "now",
                                   "B", "switched to"]) for _ in range(rng.randint(0, 40)))
        plain = [m.span() for m in re.finditer(pattern, text)] if not rx.search("") else None
        found = [m.span() for m in _search(rx, False, text)]
        if plain is not None:
            assert found == plain, text
    if pattern.startswith("[^") or "|)" in pattern or "?b" in pattern or "*" in pattern \
            or "(?=" in pattern or pattern.startswith("(?i)"):
        assert first_chars(rx) is None  # cannot tell: the plain search is used


def test_a_red_flag_at_the_end_of_200_kb_is_found_and_negations_still_hold(clf):
    filler = "I would like to reschedule my appointment next week if possible. " * 3100
    live = filler + "Since this morning I am bleeding heavily and soaking a pad every hour."
    negated = filler + "There is no bleeding at all and no pain."
    assert clf.classify(live).category == "emergency"
    assert clf.classify(negated).category != "emergency"
    assert clf.classify("what should I do if I start bleeding heavily").category != "emergency"


def test_matching_time_does_not_grow_with_the_rules_times_the_text(clf):
    """A megabyte made of the rules' own first words (the worst case for the old matcher,
    which searched the whole text once per candidate phrase) classifies in seconds."""
    words = sorted({t.first for r in clf.rules for t in r.terms.terms if t.first})
    text = " ".join(words[i % len(words)] for i in range(150_000))[:1_000_000]
    started = time.thread_time()
    clf.classify(text)
    assert time.thread_time() - started < 10.0


def test_a_pattern_matching_empty_text_at_the_end_does_not_loop_forever():
    """A rule pattern may match an empty string somewhere (``\\bx*`` after a digit) while
    not matching empty text (which the rule loader refuses): the search must end."""
    assert [m.span() for m in _search(re.compile(r"\bx*"), False, "1")] == [(0, 0), (1, 1)]
