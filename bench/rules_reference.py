"""The rule matcher as it was before the one-pass index, kept for comparison only.

Every candidate term searched the whole text (``regex.search`` from left to right), and a
situation's matches were all found and qualified before a rule looked at them.
`reference()` swaps these into gateway.classification.matcher for the duration of a
``with`` block; tests/test_rules_one_pass.py and bench/rules_speed.py compare the two.
"""
from __future__ import annotations

import contextlib
import re
from typing import Iterator

from gateway.classification import matcher
from gateway.classification.qualifiers import not_now


def iter_term_matches(terms, index) -> Iterator[tuple[object, re.Match]]:
    text = index.text
    for term in terms.candidates(index):
        if term.also and not term.possible(index):
            continue
        pos = 0
        while True:
            m = term.regex.search(text, pos)
            if m is None:
                break
            start = m.start()
            if term.bounded and start > 0 and _is_word_char(text[start - 1]) \
                    and start < len(text) and _is_word_char(text[start]):
                pos = start + 1
                continue
            yield term, m
            pos = m.end() if m.end() > start else start + 1


def iter_matches(terms, index) -> Iterator[re.Match]:
    return (m for _term, m in iter_term_matches(terms, index))


def _also_live(terms, index, rule, main) -> bool:
    key = ("reference", id(terms), rule.negatable)
    spans = index.memo.get(key)
    if spans is None:
        spans = index.memo[key] = [
            (m.start(), m.end(), rule.negatable and not_now(
                index.text, m.start(), m.end(), matcher._CONTEXT_NEGATION_WORDS))
            for m in iter_matches(terms, index)]
    return any(not discounted or (main.start() <= start and end <= main.end())
               for start, end, discounted in spans)


def _is_word_char(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


@contextlib.contextmanager
def reference():
    """Within the block, gateway.classification.matcher matches the old way."""
    saved = {name: getattr(matcher, name)
             for name in ("iter_term_matches", "iter_matches", "_also_live")}
    matcher.iter_term_matches, matcher.iter_matches = iter_term_matches, iter_matches
    matcher._also_live = _also_live
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(matcher, name, value)
