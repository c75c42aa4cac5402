"""The characters a regular expression's match can begin with, as a one-character class.

A free rule pattern such as ``(?<!hace )\\b\\d{1,2} ?weeks?`` begins with look-behinds,
which keep the `re` engine from skipping quickly to where a match could start: it tries
every position of the text.  `first_chars` reads the pattern (ignoring the zero-width
assertions in front) and returns a class such as ``[0-9\\d]`` when every match must begin
with one of a known set of characters, or None when it cannot tell (then nothing is
skipped).  Searching for that class first is exact: no match can start before it.
"""
from __future__ import annotations

import re
from re import _constants as C, _parser as P

_CATEGORIES = {C.CATEGORY_DIGIT: r"\d", C.CATEGORY_WORD: r"\w", C.CATEGORY_SPACE: r"\s",
               C.CATEGORY_NOT_DIGIT: r"\D", C.CATEGORY_NOT_WORD: r"\W",
               C.CATEGORY_NOT_SPACE: r"\S"}


def first_chars(pattern: re.Pattern) -> re.Pattern | None:
    """A one-character class every match of *pattern* starts with, or None."""
    if pattern.flags & (re.IGNORECASE | re.VERBOSE) or not isinstance(pattern.pattern, str):
        return None
    try:
        parts = _first(P.parse(pattern.pattern, pattern.flags))
    except Exception:  # an unusual construct: search the plain way
        return None
    if not parts:
        return None
    return re.compile("[" + "".join(sorted(set(parts))) + "]")


def engine_skips(pattern: re.Pattern) -> bool:
    """True when the `re` engine itself skips quickly to where a match can start (as its
    compiler does): the pattern, inside any leading groups, begins with a literal, a class
    or alternatives that each begin with a literal.  Otherwise (a look-behind, ``\\b``,
    a repeat first) it tries the whole pattern at every position of the text."""
    try:
        items = P.parse(pattern.pattern, pattern.flags).data
    except Exception:
        return True
    while items and items[0][0] is C.SUBPATTERN:
        items = items[0][1][-1].data
    if not items:
        return False
    op, arg = items[0]
    if op is C.BRANCH:
        return all(branch.data and branch.data[0][0] is C.LITERAL for branch in arg[1])
    return op in (C.LITERAL, C.IN)


def _first(items) -> list[str] | None:
    """The class items of the first consuming element of a sequence, after leading
    zero-width assertions; None when the sequence may begin otherwise (or be empty)."""
    for op, arg in items:
        if op is C.AT or (op in (C.ASSERT, C.ASSERT_NOT) and arg[0] == -1):
            continue  # \b, ^ and look-behinds consume nothing: the next element decides
        return _element(op, arg)
    return None


def _element(op, arg) -> list[str] | None:
    if op is C.LITERAL:
        return [re.escape(chr(arg))]
    if op is C.IN:
        return _charset(arg)
    if op is C.SUBPATTERN:
        return _first(arg[-1])
    if op is C.BRANCH:
        out: list[str] = []
        for branch in arg[1]:
            part = _first(branch)
            if part is None:
                return None
            out += part
        return out
    if op in (C.MAX_REPEAT, C.MIN_REPEAT, C.POSSESSIVE_REPEAT) and arg[0] >= 1:
        return _first(arg[2])
    if op is C.ATOMIC_GROUP:
        return _first(arg)
    return None


def _charset(items) -> list[str] | None:
    out = []
    for op, arg in items:
        if op is C.LITERAL:
            out.append(re.escape(chr(arg)))
        elif op is C.RANGE:
            out.append(re.escape(chr(arg[0])) + "-" + re.escape(chr(arg[1])))
        elif op is C.CATEGORY and arg in _CATEGORIES:
            out.append(_CATEGORIES[arg])
        else:  # a negated class and the like: cannot tell cheaply
            return None
    return out
