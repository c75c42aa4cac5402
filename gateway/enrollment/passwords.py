"""Is a new password too easy to guess?  Length alone admits ``aaaaaaaaaaaa``.

Refused: a password from the shipped list of the 10,000 most common ones
(``common_passwords.txt``), also once case, digit/symbol padding (``Password2024!``) and
common letter swaps (``p@ssw0rd``) are undone; one character or a short unit repeated
(``abcabcabcabc``); a run along the alphabet, the digits or a keyboard row; and anything
with fewer than five different characters.
"""
from __future__ import annotations

import functools
import re
from pathlib import Path

LIST = Path(__file__).with_name("common_passwords.txt")
LEET = str.maketrans({"@": "a", "4": "a", "0": "o", "1": "i", "!": "i", "3": "e",
                      "$": "s", "5": "s", "7": "t", "+": "t", "9": "g"})
RUNS = ("abcdefghijklmnopqrstuvwxyz", "0123456789", "qwertyuiopasdfghjklzxcvbnm",
        "1234567890qwertyuiop", "1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik9ol0p")
PADDING = re.compile(r"^[\d\W_]+|[\d\W_]+$")


@functools.cache
def common() -> frozenset[str]:
    lines = LIST.read_text(encoding="utf-8").splitlines()
    return frozenset(w for w in lines if w and not w.startswith("#"))


def _repeated(pw: str) -> bool:
    n = len(pw)
    return any(n % k == 0 and pw[:k] * (n // k) == pw for k in range(1, n // 2 + 1))


def _a_run(pw: str) -> bool:
    """All of it follows one sequence (forwards or backwards), wrapping allowed."""
    for run in RUNS:
        for seq in (run * 3, run[::-1] * 3):
            if pw in seq:
                return True
    return False


def weakness(password: str) -> str | None:
    """Why `password` is too easy to guess, or None."""
    pw = password.lower()
    squeezed = re.sub(r"\s+", "", pw)
    cores = {pw, squeezed, PADDING.sub("", squeezed)}
    cores |= {c.translate(LEET) for c in cores}
    cores |= {PADDING.sub("", c) for c in set(cores)}
    if any(c in common() for c in cores if len(c) >= 4):
        return "it is one of the most common passwords (with a few letters or digits changed)"
    if len(set(squeezed)) < 5 or _repeated(squeezed):
        return "it repeats the same few characters"
    if _a_run(squeezed):
        return "it runs along the alphabet, the digits or the keyboard"
    return None
