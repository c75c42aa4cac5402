"""Attachment file names as mail the practice writes may show them.  Pure library.

A file name is chosen by whoever sent the message, and the acknowledgement repeats it in
mail sent from the practice's own domain: a stranger must not be able to write a paragraph
of their own ("your lab result is abnormal, log in at ...") into it.  So a shown name has
no control, format (zero-width, bidi), line or paragraph separator characters, whitespace
runs become one space, it is cut to ``MAX_CHARS``, and a name that looks like a link (a
scheme, ``www.``, a path, an ``@``, a host name before the extension, or an extension that
is also a common top-level domain) is defanged (``evil[.]example[/]login``) so that no mail
client turns it into a link.  At most ``MAX_LISTED`` names are listed; the rest are
counted.
"""
from __future__ import annotations

import re
import unicodedata

MAX_CHARS = 80
MAX_LISTED = 10
_HIDDEN = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})
_LINKY = re.compile(r"://|www\.|[@/\\]|^[a-z][a-z0-9+.-]{0,20}:", re.IGNORECASE)
# Extensions that are also top-level domains mail clients turn into links.
_TLD_EXTENSIONS = frozenset({
    "com", "net", "org", "info", "biz", "io", "co", "us", "me", "app", "zip", "mov",
    "link", "click", "xyz", "top", "online", "site", "ly", "gl", "to", "ru", "cn", "de",
    "uk", "gov", "edu", "health", "care", "clinic", "page", "dev", "ai",
})
_DEFANG = str.maketrans({".": "[.]", ":": "[:]", "/": "[/]", "\\": "[\\]", "@": "[at]"})


def visible(name: str) -> str:
    """`name` without invisible or line-breaking characters, whitespace collapsed."""
    kept = []
    for c in name:
        kind = unicodedata.category(c)
        if c in "\t\n\r\x0b\x0c" or kind == "Zs":
            kept.append(" ")
        elif kind not in _HIDDEN:
            kept.append(c)
    return " ".join("".join(kept).split())


def looks_like_link(name: str) -> bool:
    if _LINKY.search(name):
        return True
    stem, dot, ext = name.rpartition(".")
    return bool(dot) and ("." in stem or ext.lower() in _TLD_EXTENSIONS)


def shown_name(name: str) -> str:
    """One file name as the practice's mail may show it."""
    text = visible(name)
    if len(text) > MAX_CHARS:
        text = text[:MAX_CHARS - 1].rstrip() + "\u2026"
    if looks_like_link(text):
        text = text.translate(_DEFANG)
    return text or "(unnamed file)"


def listed(names: list[str]) -> tuple[list[str], int]:
    """(up to MAX_LISTED shown names, how many more there are)."""
    return [shown_name(n) for n in names[:MAX_LISTED]], max(0, len(names) - MAX_LISTED)
