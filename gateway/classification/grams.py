"""The learned model's character n-grams of a message, tallied per word and cached.

The n-grams (n = 2..4) of the words joined by single spaces, `` w1 w2 ... wk ``, are of
two kinds.  One without a space inside (at its 2nd to (n-1)th character) lies within
``" " + w + " "`` for one word w: these are made once per word and kept, with the
model's packed weights of those the model knows.  The others straddle the space between
two neighbours a and b: for i = 1 .. n-2 characters before that space,
``(" " + a)[-i:] + " " + (b + " ")[:n - 1 - i]`` (a word is never empty, and a space
always follows b).  A message then makes and looks up only the straddling n-grams; the
cached ones are merged as dicts, in C.

`Grams.tally` gives what looking up every distinct n-gram string of the message gives:
how many distinct n-grams, how many of them the model knows, and the sum of their packed
weights (learned.py) -- integers, so the vote is exactly the same.
"""
from __future__ import annotations

import operator

LIMIT = 10_000  # words kept; past this the cache starts afresh


class Grams:
    """Per-word n-grams for one model's packed weights (feature name -> packed int)."""

    def __init__(self, packed: dict, n: int):
        if not supports(n):
            raise ValueError(f"n-grams of {n} characters are not tallied per word")
        self._packed = packed
        self._n = n
        # (known, unknown) and the edges, each a pair of getters for the entries below
        self._edges = [(operator.itemgetter(2 + 2 * k), operator.itemgetter(3 + 2 * k))
                       for k in range(n - 2)]
        self._cache: dict[str, tuple] = {}

    def tally(self, words: list[str], unique: set[str]) -> tuple[int, int, int]:
        """(distinct n-grams, those the model knows, the sum of their packed weights) of
        the non-empty list *words* (*unique*: its set)."""
        cache = self._cache  # only ever added to; replaced, not cleared, when full
        for word in unique.difference(cache):
            cache[word] = self._entry(word)
        entries = list(map(cache.__getitem__, unique))
        known: dict = {}
        merge = known.update
        for entry in entries:
            merge(entry[0])
        unknown = set().union(*map(_UNKNOWN, entries))
        straddling: set[str] = set()
        if len(words) > 1:
            seq = list(map(cache.__getitem__, words))
            before, after = seq[:-1], seq[1:]
            for tail, head in self._edges:
                straddling.update(map(operator.add, map(tail, before), map(head, after)))
        found = list(filter(None, map(self._packed.get, straddling)))
        if len(cache) > LIMIT:
            self._cache = {}
        return (len(known) + len(unknown) + len(straddling), len(known) + len(found),
                sum(known.values()) + sum(found))

    def _entry(self, word: str) -> tuple:
        """(known n-grams -> packed weights, unknown n-grams, then for each k the edge
        strings: the last k+1 characters of " " + word and a space, the first n-2-k
        characters of word + " ")."""
        n, packed = self._n, self._packed
        padded = " " + word + " "
        inner = {padded[i:i + n] for i in range(len(padded) - n + 1)}
        known = {g: packed[g] for g in inner if g in packed}
        edges: list[str] = []
        for k in range(n - 2):
            edges += [(" " + word)[-(k + 1):] + " ", (word + " ")[:n - 2 - k]]
        return (known, frozenset(inner.difference(known)), *edges)


_UNKNOWN = operator.itemgetter(1)


def supports(n: int) -> bool:
    """Whether n-grams of *n* characters can be tallied per word (2 to 4: a longer one
    can straddle a word of one letter and reach the word after)."""
    return 2 <= n <= 4
