"""Strict syntax for the addresses that decide who a sender is.

An address a parser could read two ways never reaches a patient look-up: envelope addresses
must be plain RFC 5321 (``<local@domain>``, no comments, source routes, quoted local parts or
address literals), domains compare after strict IDNA 2008 (no UTS 46 mapping, so full-width
and other compatibility forms never match), and the header block must have exactly one
``From:`` line that every parser reads the same way.
"""
from __future__ import annotations

import re
import unicodedata

import idna

from gateway.addresses import normalize

ENVELOPE_SYNTAX = "553 5.1.7 Sender address must be a plain address like <name@example.org>"

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_DOT_ATOM = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*\Z")
_LDH = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)\Z", re.I)
_MAIL_ARG = re.compile(r"FROM:[ ]*<([^<>]*)>(?:[ ]+[^ ].*)?\Z", re.I | re.S)


def _strict_domain(domain: str) -> bool:
    labels = domain.split(".")
    if len(labels) < 2 or len(domain) > 253:
        return False
    for label in labels:
        if label.isascii():
            if not _LDH.match(label):
                return False
            continue
        try:
            if idna.decode(idna.encode(label, uts46=False)) != label:
                return False
        except (idna.IDNAError, UnicodeError, ValueError):
            return False
    return True


def _strict_local(local: str) -> bool:
    if not local or len(local) > 64:
        return False
    if local.isascii():
        return bool(_DOT_ATOM.match(local))
    # SMTPUTF8: letters allowed, but nothing that only matches after compatibility mapping
    if unicodedata.normalize("NFKC", local) != local:
        return False
    ascii_view = "".join("a" if ord(c) > 127 and c.isalnum() else c for c in local)
    return bool(_DOT_ATOM.match(ascii_view))


def plain_address(address: str) -> bool:
    """True for ``local@domain`` in plain RFC 5321 syntax with a strict IDNA domain."""
    local, at, domain = (address or "").rpartition("@")
    return bool(at) and "@" not in local and _strict_local(local) and _strict_domain(domain)


def strict_normalize(address: str | None) -> str | None:
    """The normalised form for patient look-ups, only for plain addresses."""
    if not address or not plain_address(address):
        return None
    return normalize(address)


def envelope_error(arg: str) -> str | None:
    """For a raw ``MAIL FROM:`` argument: None when plain (or null), else the 553 reply."""
    match = _MAIL_ARG.match((arg or "").strip())
    if match is None:
        return ENVELOPE_SYNTAX
    address = match.group(1)
    if address == "" or plain_address(address):
        return None
    return ENVELOPE_SYNTAX


_FIELD_NAME = re.compile(rb"[!-9;-~]+")  # RFC 5322 ftext: printable ASCII but ':'


def _header_block(raw: bytes) -> bytes:
    """The header block with CRLF read as LF: up to the first empty line.  Only the
    block is copied, never the body (a 20 MB message costs no 20 MB copy here)."""
    ends = [i for i in (raw.find(b"\n\n"), raw.find(b"\n\r\n")) if i >= 0]
    if not ends:
        return raw.replace(b"\r\n", b"\n")
    return raw[:min(ends) + 1].replace(b"\r\n", b"\n")[:-1]


def header_block_error(raw: bytes) -> str | None:
    """A short reason when the header block could be read two ways, else None: leading
    whitespace, a field name with spaces or odd bytes (``From :``, ``From\\t:``), a line
    without a colon, or not exactly one ``From:`` field."""
    lines = _header_block(raw).split(b"\n")
    if lines and lines[0][:1] in (b" ", b"\t"):
        return "header-leading-whitespace"
    froms = 0
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            continue  # a folded continuation
        name, colon, _ = line.partition(b":")
        if not colon or not _FIELD_NAME.fullmatch(name):
            return "header-field-syntax"
        froms += name.lower() == b"from"
    return None if froms == 1 else "header-from-count"
