"""Text normalisation and the phrase syntax used in rule files.

Both message text and rule phrases go through :func:`normalize`, so a rule
written as "se me rompió la fuente" matches "SE ME ROMPIO LA FUENTE", and
"can't breathe" matches "cant breathe" and "can’t breathe".
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Iterator

from .index import TextIndex, iter_matches, iter_term_matches  # noqa: F401 (re-exported)

_COMBINING = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")
# Apostrophes vanish ("can't" = "cant"); Spanish opening marks become spaces.
_REPLACE = (("'", ""), ("’", ""), ("‘", ""), ("`", ""), ("´", ""), ("¿", " "), ("¡", " "),
            ("“", '"'), ("”", '"'))

# Separator between the words of a phrase: spaces, hyphens or slashes.
SEP = r"[\s\-/]+"
# "..." in a phrase: up to three other words in between (captured, so the matcher can see
# a negation inside the gap: "water not broken", "incision looks fine no redness").
GAP = SEP + r"((?:[\w']+" + SEP + r"){0,3}?)"
_WORD = re.compile(r"^[\w']+\*?$")


def normalize(text: str) -> str:
    """Lower-case, strip accents and apostrophes, squeeze white space."""
    for a, b in _REPLACE:
        if a in text:
            text = text.replace(a, b)
    if not text.isascii():
        text = _COMBINING.sub("", unicodedata.normalize("NFKD", text))
    # ASCII text folds as it lower-cases, and str.lower has a fast path for it
    return " ".join((text.lower() if text.isascii() else text.casefold()).split())


def _phrase_regex(tokens: list[str]) -> str:
    parts: list[str] = []
    for tok in tokens:
        if tok == "...":
            parts.append(GAP)
            continue
        if parts and parts[-1] != GAP:
            parts.append(SEP)
        parts.append(re.escape(tok[:-1]) + r"\w*" if tok.endswith("*") else re.escape(tok))
    # The start-of-word check is done in code (see iter_matches): a regex that
    # starts with a literal is searched an order of magnitude faster.
    return "".join(parts) + ("" if tokens[-1].endswith("*") else r"(?!\w)")


def _phrase_tokens(phrase: str) -> list[str]:
    tokens = normalize(phrase).replace("...", " ... ").split()
    if not tokens or all(t == "..." for t in tokens):
        raise ValueError(f"empty phrase {phrase!r}")
    if tokens[0] == "..." or tokens[-1] == "...":
        raise ValueError(f"phrase {phrase!r} may not start or end with '...'")
    for tok in tokens:
        if tok != "..." and not _WORD.match(tok):
            raise ValueError(
                f"phrase {phrase!r}: word {tok!r} may only contain letters, digits "
                "and a final '*' (use 'patterns' for regular expressions)")
    return tokens


def phrase_to_regex(phrase: str) -> str:
    """Translate one rule phrase into a regular expression (a string).

    Syntax: words separated by spaces; a word ending in ``*`` matches any
    ending (``bleed*`` = bleed, bleeds, bleeding); a lone ``...`` lets up to
    three other words stand in between.  Raises ValueError on bad syntax.
    The returned regex must be used through :func:`iter_matches`, which checks
    that a match starts at the beginning of a word.
    """
    return _phrase_regex(_phrase_tokens(phrase))


@dataclass(frozen=True)
class Term:
    """One compiled phrase or pattern of a rule."""

    regex: re.Pattern
    first: str = ""      # first word a phrase needs in the text ("" = always try)
    stem: bool = False   # first word is a stem (``bleed*``)
    bounded: bool = True  # the match must start at the beginning of a word
    also: tuple = ()      # other words the phrase needs: (word, is_stem) pairs
    gaps: bool = False    # a phrase with "...": its groups are the words in the gaps

    def possible(self, index: TextIndex) -> bool:
        """False when a word the phrase needs is missing from the text."""
        for word, stem in self.also:
            if not (index.has_stem(word) if stem else word in index.words):
                return False
        return True


def phrase_term(phrase: str) -> Term:
    tokens = _phrase_tokens(phrase)
    first = tokens[0]
    also = tuple(dict.fromkeys((t.rstrip("*"), t.endswith("*")) for t in tokens[1:]
                               if t != "..."))
    return Term(re.compile(_phrase_regex(tokens)), first.rstrip("*"), first.endswith("*"),
                True, also, "..." in tokens)


def pattern_terms(pattern: str) -> list[Term]:
    """Compile an ops-written regex into one or more terms, for speed.

    A leading ``\\b`` is checked in code.  A pattern that starts with a group of
    plain-word alternatives, e.g. ``(pad|pads|tampon)\\b.{0,25}every``, is split
    into one regex per alternative: each then starts with a literal (fast to
    search) and is skipped when its first word is not in the text at all.
    """
    bounded = pattern.startswith(r"\b")
    body = pattern[2:] if bounded else pattern
    split = _split_leading_alternatives(body)
    if split is not None:
        alternatives, rest = split
        try:
            return [Term(re.compile(re.escape(alt) + rest), alt.split()[0], True, bounded)
                    for alt in alternatives]
        except re.error:
            pass
    try:
        return [Term(re.compile(body), "", False, bounded)]
    except re.error:
        return [Term(re.compile(pattern), "", False, False)]


_LITERAL_ALT = re.compile(r"^[a-z0-9][a-z0-9 ]*$")


def _split_leading_alternatives(body: str) -> tuple[list[str], str] | None:
    if body.startswith("(?:"):
        inner_start = 3
    elif body.startswith("(") and not body.startswith("(?"):
        inner_start = 1
    else:
        return None
    depth = 0
    for i, ch in enumerate(body):
        if ch == "\\":
            return None  # escapes inside the group: leave the pattern alone
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0:
            break
    else:
        return None
    alternatives, rest = body[inner_start:i].split("|"), body[i + 1:]
    if rest[:1] in ("?", "*", "+", "{") or "\\1" in rest:
        return None
    if not all(_LITERAL_ALT.match(a) for a in alternatives):
        return None
    return alternatives, rest


class TermSet:
    """A rule's terms, grouped by the first word each needs in the text."""

    __slots__ = ("terms", "always", "exact", "stems", "exact_keys", "_stem_heads")

    def __init__(self, terms: list[Term] | tuple[Term, ...]):
        self.terms = tuple(terms)
        self.always = tuple(t for t in self.terms if not t.first)
        self.exact: dict[str, list[Term]] = {}
        self.stems: dict[str, list[Term]] = {}
        for t in self.terms:
            if t.first:
                (self.stems if t.stem else self.exact).setdefault(t.first, []).append(t)
        self.exact_keys = frozenset(self.exact)
        # (stem, its first three letters or None when shorter, terms): a stem whose first
        # three letters begin no word of the text is ruled out without a look-up.
        self._stem_heads = tuple((stem, stem[:3] if len(stem) >= 3 else None, terms)
                                 for stem, terms in self.stems.items())

    def __len__(self) -> int:
        return len(self.terms)

    def candidates(self, index: TextIndex) -> Iterator[Term]:
        yield from self.always
        for word in self.exact_keys & index.words:
            yield from self.exact[word]
        heads = index.heads
        for stem, head, terms in self._stem_heads:
            if (head is None or head in heads) and index.has_stem(stem):
                yield from terms
