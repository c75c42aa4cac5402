"""Confidential markers (``rules/confidential.toml``): does a text touch care that a minor
of 12-17 consents to alone in California (pregnancy, contraception, STI, sexual health,
sexual assault, mental health)?

A marker names a ``topic`` and lists ``phrases`` and/or ``patterns`` in the rule files'
syntax (rules/README.md), with optional ``except`` phrases for harmless senses.  Markers do
not vote for a category and know no negation: "I am not pregnant" is about pregnancy too.
Validated when the classifier loads (and by ``check-config``, which also vets the patterns
against catastrophic backtracking); errors name the file and the marker.  Pure: no I/O at
match time.
"""
from __future__ import annotations

import pathlib
import tomllib
from dataclasses import dataclass

from .model import RuleError
from .rules import ID_RE, _compile_terms
from .text import TermSet, TextIndex, iter_matches, normalize

FILENAME = "confidential.toml"
TOPICS = ("pregnancy", "contraception", "sti", "sexual-health", "sexual-assault",
          "mental-health")
KEYS = {"id", "topic", "reason", "phrases", "patterns", "except"}


@dataclass(frozen=True)
class Marker:
    id: str
    topic: str
    reason: str
    terms: TermSet
    excepts: TermSet | None


def load(rules_dir: pathlib.Path) -> tuple[Marker, ...]:
    """The markers of ``rules_dir/confidential.toml``; none when the file is absent."""
    path = pathlib.Path(rules_dir) / FILENAME
    if not path.is_file():
        return ()
    name = str(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError) as exc:
        raise RuleError(name, f"cannot read: {exc}") from None
    if set(data) - {"marker"} or not isinstance(data.get("marker", []), list):
        raise RuleError(name, "expected only [[marker]] tables")
    markers, seen = [], set()
    for index, table in enumerate(data.get("marker", []), 1):
        marker = _marker(name, index, table)
        if marker.id in seen:
            raise RuleError(name, "duplicate marker id", marker.id)
        seen.add(marker.id)
        markers.append(marker)
    return tuple(markers)


def _marker(name: str, index: int, table) -> Marker:
    if not isinstance(table, dict):
        raise RuleError(name, f"marker #{index} is not a table")
    mid = table.get("id")
    label = mid if isinstance(mid, str) and mid else f"#{index}"

    def fail(msg: str):
        raise RuleError(name, msg, label)

    unknown = set(table) - KEYS
    if unknown:
        fail(f"unknown field(s): {', '.join(sorted(unknown))} (known: {', '.join(sorted(KEYS))})")
    if not isinstance(mid, str) or not ID_RE.match(mid):
        fail("id must be lower-case kebab-case, e.g. 'confidential-pregnancy'")
    if table.get("topic") not in TOPICS:
        fail(f"unknown topic {table.get('topic')!r} (known: {', '.join(TOPICS)})")
    reason = table.get("reason", "")
    if not isinstance(reason, str) or not reason.strip():
        fail("reason must be a non-empty text")
    terms = _compile_terms(table, ("phrases", "patterns"), fail)
    if terms is None:
        fail("needs at least one entry in 'phrases' or 'patterns'")
    return Marker(mid, table["topic"], reason.strip(), terms,
                  _compile_terms(table, ("except",), fail))


def _found(marker: Marker, index: TextIndex) -> bool:
    spans = [] if marker.excepts is None else [
        (m.start(), m.end()) for m in iter_matches(marker.excepts, index)]
    return any(not any(s <= m.start() and m.end() <= e for s, e in spans)
               for m in iter_matches(marker.terms, index))


def find(markers: tuple[Marker, ...], *texts: str) -> tuple[str, ...]:
    """The topics (in TOPICS order) that any marker finds in any of TEXTS."""
    return find_indexed(markers, *(TextIndex(normalize(text or "")) for text in texts))


def find_indexed(markers: tuple[Marker, ...], *indexes: TextIndex) -> tuple[str, ...]:
    """`find` over texts already normalised and indexed (the classifier shares its own)."""
    found = set()
    for index in indexes:
        if not index.words and not any(m.terms.always for m in markers):
            continue  # no word (e.g. no subject): only a free pattern could match
        found.update(m.topic for m in markers if m.topic not in found and _found(m, index))
    return tuple(t for t in TOPICS if t in found)
