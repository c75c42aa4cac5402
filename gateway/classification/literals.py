"""Words a regular expression's every match must contain, read from the pattern.

A free rule pattern such as ``(incisions?|wounds?|scars?)\\b.{0,40}\\b(red|hot)`` can
only match a text that contains "incision", "wound" or "scar" somewhere: its match
begins with one of them.  `needed` reads the pattern once and returns such a set of
plain strings (or None when it cannot tell); a text that contains none of them has no
match, which a substring test (``in``, in C) tells far faster than the regex engine,
which tries the pattern at every place where one of its first characters occurs.

The set is exact, never a guess: it is taken from a part of the pattern that every
match must go through (a run of literal characters, a group, every branch of an
alternation, a repeat of at least once), never from an optional part, a look-around,
or a pattern that ignores case.
"""
from __future__ import annotations

import re
from re import _constants as C, _parser as P


def needed(pattern: re.Pattern) -> tuple[str, ...] | None:
    """Strings at least one of which every match of *pattern* contains, or None."""
    if pattern.flags & (re.IGNORECASE | re.VERBOSE) or not isinstance(pattern.pattern, str):
        return None
    try:
        found = _sequence(P.parse(pattern.pattern, pattern.flags).data)
    except Exception:  # an unusual construct: no shortcut
        return None
    if not found or not all(found):
        return None
    # A string that contains another of the set adds nothing: "100." once "10" is there.
    return tuple(sorted(s for s in found if not any(t != s and t in s for t in found)))


def present(strings: tuple[str, ...] | None, text: str) -> bool:
    """False only when the text contains none of *strings* (`needed`): no match then."""
    if strings is None:
        return True
    for s in strings:
        if s in text:
            return True
    return False


def _sequence(items) -> frozenset | None:
    """The best set for a sequence: any of its mandatory parts will do, so the one whose
    shortest string is longest (then the one with fewest strings)."""
    options: list[frozenset] = []
    run: list[str] = []
    for op, arg in items:
        if op is C.LITERAL:
            run.append(chr(arg))
            continue
        if run:
            options.append(frozenset(["".join(run)]))
            run = []
        part = _element(op, arg)
        if part:
            options.append(part)
    if run:
        options.append(frozenset(["".join(run)]))
    if not options:
        return None
    return max(options, key=lambda s: (min(map(len, s)), -len(s)))


def _element(op, arg) -> frozenset | None:
    if op is C.SUBPATTERN:
        _group, add_flags, _del_flags, body = arg
        if add_flags & re.IGNORECASE:
            return None
        return _sequence(body.data)
    if op is C.ATOMIC_GROUP:
        return _sequence(arg.data)
    if op is C.BRANCH:
        out: set[str] = set()
        for branch in arg[1]:
            part = _sequence(branch.data)
            if not part:
                return None  # a branch that needs nothing: the alternation needs nothing
            out |= part
        return frozenset(out)
    if op in (C.MAX_REPEAT, C.MIN_REPEAT, C.POSSESSIVE_REPEAT) and arg[0] >= 1:
        return _sequence(arg[2].data)
    if op is C.IN and all(kind is C.LITERAL for kind, _ in arg):  # "a|b" is parsed as [ab]
        return frozenset(chr(c) for _, c in arg)
    return None  # a class, an assertion, an optional part...: nothing it must contain
