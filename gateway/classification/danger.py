"""Danger words of languages the gateway does not read (``rules/unread.toml``).

A message written wholly in a language the rules and the model cannot read (another
script, or Vietnamese: classification/unread.py) is raised to `emergency` only when it
holds one of these words (bleeding, pain, fever, the baby not moving, fainting, thoughts
of harm, an ambulance, "today"...), matched as a plain substring of the NFKC-folded,
case-folded text: no negation, no history, so a mention is enough.  Without a danger
word it keeps the category the model gives it (or `other` when the model is unsure), with
the pseudo-rule `unread-language` telling staff that it needs a reader.  Without the file
every such message is raised, as before the file existed.

    [[danger]]
    lang = "ru"
    name = "Russian"
    words = ["кровотеч", "кровь", ...]

Validated when the classifier loads and by ``check-config``; errors name the file and
the table.  Pure: no I/O at match time.
"""
from __future__ import annotations

import pathlib
import re
import tomllib
import unicodedata
from dataclasses import dataclass

from .model import RuleError

FILENAME = "unread.toml"
KEYS = {"lang", "name", "words"}
_LANG = re.compile(r"^[a-z]{2,3}$")
MAX_WORD = 40


@dataclass(frozen=True)
class DangerWords:
    languages: tuple[str, ...]
    pattern: re.Pattern

    def find(self, text: str) -> str | None:
        """The language of the first danger word in *text*, or None."""
        m = self.pattern.search(fold(text))
        return None if m is None else self.languages[m.lastindex - 1]


def fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text or "").casefold()


def load(rules_dir: pathlib.Path) -> DangerWords | None:
    """The danger words of ``rules_dir/unread.toml``; None when the file is absent."""
    path = pathlib.Path(rules_dir) / FILENAME
    if not path.is_file():
        return None
    name = str(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError) as exc:
        raise RuleError(name, f"cannot read: {exc}") from None
    tables = data.get("danger", [])
    if set(data) - {"danger"} or not isinstance(tables, list) or not tables:
        raise RuleError(name, "expected [[danger]] tables (lang, name, words)")
    languages, groups, seen = [], [], set()
    for index, table in enumerate(tables, 1):
        lang, words = _table(name, index, table)
        if lang in seen:
            raise RuleError(name, "language listed twice", f"[[danger]] #{index} ({lang})")
        seen.add(lang)
        languages.append(lang)
        # Longest first, so one alternation per language finds any of its words.
        alternatives = "|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True))
        groups.append(f"({alternatives})")
    return DangerWords(tuple(languages), re.compile("|".join(groups)))


def _table(name: str, index: int, table) -> tuple[str, list[str]]:
    label = f"[[danger]] #{index}"
    if not isinstance(table, dict):
        raise RuleError(name, "is not a table", label)
    lang = table.get("lang")
    if isinstance(lang, str):
        label = f"{label} ({lang})"
    unknown = set(table) - KEYS
    if unknown:
        raise RuleError(name, f"unknown field(s): {', '.join(sorted(unknown))} "
                        f"(known: {', '.join(sorted(KEYS))})", label)
    if not isinstance(lang, str) or not _LANG.match(lang):
        raise RuleError(name, "lang must be an ISO 639 code such as 'ru'", label)
    words = table.get("words")
    if not isinstance(words, list) or not words:
        raise RuleError(name, "words must be a non-empty list of texts", label)
    out = []
    for word in words:
        if not isinstance(word, str) or not word.strip() or len(word) > MAX_WORD:
            raise RuleError(name, f"word {word!r}: a non-empty text of at most {MAX_WORD} "
                            "characters", label)
        folded = fold(word.strip())
        if folded.isascii():
            raise RuleError(name, f"word {word!r} is plain ASCII: these lists are for "
                            "languages the rules do not read", label)
        out.append(folded)
    return lang, out
