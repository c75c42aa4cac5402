"""One pass over a text, then every rule term is tried only where it can start.

`TextIndex` reads the normalised text once: its words and, for each word, where it
starts.  A phrase (or a pattern that begins with plain words) can only start where its
first word starts, so `iter_term_matches` tries its regular expression anchored at those
places (``regex.match(text, pos)``) instead of searching the whole text.  The cost of
matching is then the length of the text (read once) plus the occurrences of the words
the rules begin with, not the length of the text times the number of rules.

The matches are exactly those of searching the whole text from left to right: a search
returns the first place at or after its start where the expression matches, and a term
whose expression begins with its first word cannot match anywhere else.  Terms with no
first word (free patterns such as ``\\$ ?\\d``) are searched as before, once per text
however many rules share them.
"""
from __future__ import annotations

import bisect
import functools
import itertools
import operator
import re
from typing import Iterator

from .firstchar import engine_skips, first_chars
from .literals import needed, present

_WORDS = re.compile(r"\w+")
_SPLIT = re.compile(r"(\w+)").split
_first_chars = functools.lru_cache(maxsize=4096)(first_chars)
_engine_skips = functools.lru_cache(maxsize=4096)(engine_skips)
_needed = functools.lru_cache(maxsize=4096)(needed)


class TextIndex:
    """A normalised text, its words and where each word starts."""

    __slots__ = ("text", "words", "heads", "_sorted", "_stems", "_at", "_stem_at", "memo")

    def __init__(self, text: str):
        self.text = text
        at: dict[str, list[int]] = {}
        get = at.get
        for word, start in _words_and_starts(text):
            if word:
                found = get(word)
                if found is None:
                    at[word] = [start]
                else:
                    found.append(start)
        self._at = at
        self.words = frozenset(at)
        self._sorted: list[str] | None = None
        self._stems: dict[str, bool] = {}
        self._stem_at: dict[str, list[int]] = {}
        self.heads = frozenset(map(_HEAD, at))  # the first 3 letters of words
        self.memo: dict = {}  # per-text results the matcher reuses across rules

    def _sorted_words(self) -> list[str]:
        if self._sorted is None:
            self._sorted = sorted(self.words)
        return self._sorted

    def has_stem(self, stem: str) -> bool:
        found = self._stems.get(stem)
        if found is None:
            if len(stem) >= 3 and stem[:3] not in self.heads:
                found = False
            else:
                words = self._sorted_words()
                i = bisect.bisect_left(words, stem)
                found = i < len(words) and words[i].startswith(stem)
            self._stems[stem] = found
        return found

    def starts_of(self, word: str) -> list[int]:
        """Where *word* starts in the text, as a whole word (ascending)."""
        return self._at.get(word, [])

    def starts_of_stem(self, stem: str) -> list[int]:
        """Where a word beginning with *stem* starts (ascending)."""
        found = self._stem_at.get(stem)
        if found is None:
            words, found = self._sorted_words(), []
            i = bisect.bisect_left(words, stem)
            while i < len(words) and words[i].startswith(stem):
                found.extend(self._at[words[i]])
                i += 1
            found.sort()
            self._stem_at[stem] = found
        return found


# An ASCII text's words are its runs of [A-Za-z0-9_] (what \\w is in ASCII): every other
# character becomes a space in C, and one split on single spaces gives each word (and an
# empty string between two neighbouring separators), each starting one past the previous
# part's end.
_NOT_WORD = bytes(c if chr(c).isalnum() or c == ord("_") else 32 for c in range(128)) \
    + bytes(range(128, 256))
_HEAD = operator.itemgetter(slice(None, 3))


def _words_and_starts(text: str):
    """(word, start) pairs in order; a pair with an empty word is to be skipped."""
    if text.isascii():
        parts = text.encode("ascii").translate(_NOT_WORD).decode("ascii").split(" ")
        return zip(parts, map(operator.add, itertools.accumulate(map(len, parts), initial=0),
                              itertools.count()))
    # [gap, word, gap, word, ..., gap] from one split: each word starts where its gap ends
    parts = _SPLIT(text)
    return zip(parts[1::2], list(itertools.accumulate(map(len, parts)))[::2])


def iter_matches(terms, index: TextIndex) -> Iterator[re.Match]:
    """Every match of the terms in the indexed text, each starting at a word start."""
    return (m for _term, m in iter_term_matches(terms, index))


def iter_term_matches(terms, index: TextIndex) -> Iterator[tuple[object, re.Match]]:
    """Like :func:`iter_matches`, with the term that matched (terms in the order of
    ``TermSet.candidates``, each term's matches from left to right)."""
    for term in terms.candidates(index):
        if term.also and not term.possible(index):
            continue
        if term.first and term.bounded:
            starts = (index.starts_of_stem(term.first) if term.stem
                      else index.starts_of(term.first))
            for m in _anchored(term.regex, index.text, starts):
                yield term, m
        else:
            for m in _searched(term, index):
                yield term, m


def _anchored(regex: re.Pattern, text: str, starts: list[int]) -> Iterator[re.Match]:
    """The matches a left-to-right search would find, trying only the word starts given
    (every one of them starts a word, so the start-of-word check always holds)."""
    pos = 0
    for start in starts:
        if start < pos:
            continue
        m = regex.match(text, start)
        if m is not None:
            yield m
            pos = m.end() if m.end() > start else start + 1


def _searched(term, index: TextIndex) -> Iterator[re.Match]:
    """A free pattern searched over the whole text, once per text: the matches found are
    kept, so rules sharing the pattern (situations, repeated patterns) do not search again."""
    key = ("search", term.regex, term.bounded)
    found = index.memo.get(key)
    if found is None:
        found = index.memo[key] = Cached(_search(term.regex, term.bounded, index.text))
    return iter(found)


# A search from a place where the pattern fails goes on to try every later position,
# which is slow for a pattern that begins with look-behinds (the engine cannot skip ahead
# to its first characters).  For such a pattern the first _TRIES places where a match can
# begin are tried alone (``regex.match``): a search finds the same match, the one at the
# first place from which the pattern matches.  Past that many places (the text is full of
# its first characters) each search goes on from the last place, as before.
_TRIES = 24


def _search(regex: re.Pattern, bounded: bool, text: str) -> Iterator[re.Match]:
    if not present(_needed(regex), text):  # a word every match contains is not in the text
        return
    skip, pos = _first_chars(regex), 0
    tries = 0 if skip is None or _engine_skips(regex) else _TRIES
    while True:
        if skip is not None:  # no match can begin before the next of its first characters
            ahead = skip.search(text, pos)
            if ahead is None:
                return
            pos = ahead.start()
        if tries:
            tries -= 1
            m = regex.match(text, pos)
            if m is None:
                pos += 1
                continue
        else:
            m = regex.search(text, pos)
            if m is None:
                return
        start = m.start()
        if bounded and start > 0 and _is_word_char(text[start - 1]) \
                and start < len(text) and _is_word_char(text[start]):
            pos = start + 1
            continue
        yield m
        pos = m.end() if m.end() > start else start + 1
        if pos > len(text):  # an empty match at the very end (``\bx*``): nothing after it
            return


class Cached:
    """An iterator's items, produced once and only as far as anybody has asked."""

    __slots__ = ("_items", "_source")

    def __init__(self, source: Iterator):
        self._items: list = []
        self._source = source

    def __iter__(self):
        i = 0
        while True:
            if i < len(self._items):
                yield self._items[i]
            else:
                item = next(self._source, _END)
                if item is _END:
                    return
                self._items.append(item)
                yield item
            i += 1


_END = object()


def _is_word_char(ch: str) -> bool:
    return ch.isalnum() or ch == "_"
