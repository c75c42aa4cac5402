"""Text in a language the gateway does not read.

The rules and the learned model read English and Spanish (with some Tagalog-English).
A message written wholly in another script (Chinese, Korean, Punjabi, Arabic, Russian...)
or in Vietnamese gives them nothing to go on: the model's vote is noise, and no red
flag can match.  Such a message cannot be ruled out as an emergency, so (with
``[settings] unread_language_urgent = true``, the default) it is raised to `emergency` by
the built-in pseudo-rule below: it reaches on-call and the triage address on the urgent
clock, where someone arranges a translation, and the patient gets the emergency notice.
When ``rules/unread.toml`` lists danger words (classification/danger.py), only a message
holding one of them is raised; the others keep the model's category with the pseudo-rule
``unread-language`` (no score) that tells staff the message needs a reader.
"""
from __future__ import annotations

import re
import string
import unicodedata

from ..language import marker_words
from .model import EMERGENCY, OTHER, RuleHit

RULE_ID = "emergency-unread-language"
REASON = ("Written in a language the gateway does not read: an emergency cannot be ruled "
          "out, so it goes to on-call on the urgent clock for someone to read it")
QUIET_ID = "unread-language"
QUIET_REASON = ("Written in a language the gateway does not read, with no danger word of "
                "rules/unread.toml: sorted by the model only; it needs a reader")
MIN_LETTERS = 20  # fewer letters than this (a name, "谢谢") are never judged
FOREIGN_SHARE = 0.5  # half the letters outside the Latin script
# Letters (without their accents) that Vietnamese uses and English and Spanish do not.
_VIETNAMESE = frozenset("ăâđêôơư")
VIETNAMESE_SHARE = 0.04
MAX_READ_WORDS = 2  # this many English/Spanish marker words: the rules and model can read it
_NON_ASCII = re.compile(r"[^\x00-\x7f]").findall
_ASCII_LETTERS = string.ascii_letters.encode()


def is_unread(text: str, limit: int = 6000) -> bool:
    """Whether TEXT (its first LIMIT characters) is written in a language we do not read:
    in another script or in Vietnamese, with hardly an English or Spanish word in it
    ("Chị ơi, kết quả ... ? still waiting on my blood test results" is read)."""
    sample = (text or "")[:limit]
    if sample.isascii():  # nearly every message: no letter of another script or Vietnamese
        return False
    # The letters counted in C: the ASCII ones (a-z, A-Z) from the ASCII characters, and
    # the few others one by one (only these can be foreign or Vietnamese).  Both shares
    # below count letters outside ASCII: with fewer than VIETNAMESE_SHARE of the letters
    # (a few accents in English or Spanish) neither is reached.
    plain = sample.encode("ascii", "ignore")
    ascii_letters = len(plain) - len(plain.translate(None, _ASCII_LETTERS))
    if len(sample) - len(plain) < VIETNAMESE_SHARE * ascii_letters:
        return False
    wide = [c for c in _NON_ASCII(sample) if c.isalpha()]
    letters = ascii_letters + len(wide)
    if letters < MIN_LETTERS or len(wide) < VIETNAMESE_SHARE * letters:
        return False
    foreign = sum(1 for c in wide if not _latin(c)) >= FOREIGN_SHARE * letters
    vietnamese = sum(1 for c in wide if _base(c) in _VIETNAMESE)
    if not (foreign or vietnamese >= VIETNAMESE_SHARE * letters):
        return False
    return marker_words(text, limit) < MAX_READ_WORDS


def hit(score: float, text: str = "", danger=None) -> RuleHit:
    """The pseudo-rule shown to staff (`X-Portal-Rules`, `inspect`) for an unread TEXT:
    raised to emergency, unless *danger* (danger.DangerWords) finds no danger word in it."""
    if danger is not None:
        lang = danger.find(text)
        if lang is None:
            return RuleHit(QUIET_ID, OTHER, 0.0, QUIET_REASON)
        return RuleHit(RULE_ID, EMERGENCY, score, f"{REASON} (a danger word, {lang})",
                       second_opinion=False)
    return RuleHit(RULE_ID, EMERGENCY, score, REASON, second_opinion=False)


def _latin(c: str) -> bool:
    """Basic Latin up to the IPA block, and Latin Extended Additional (Vietnamese)."""
    return c < "\u0250" or "\u1e00" <= c <= "\u1eff"


# (base letter, combining mark) -> the Vietnamese letter it makes
_MARKED = {("a", "\u0306"): "ă", ("a", "\u0302"): "â", ("e", "\u0302"): "ê",
           ("o", "\u0302"): "ô", ("o", "\u031b"): "ơ", ("u", "\u031b"): "ư"}


def _base(c: str) -> str:
    """The letter without its tone marks, keeping the letters Vietnamese adds (ơ, â...)."""
    decomposed = unicodedata.normalize("NFD", c.lower())
    base = decomposed[0]
    for mark in decomposed[1:]:
        if (base, mark) in _MARKED:
            return _MARKED[(base, mark)]
    return base
