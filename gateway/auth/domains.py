"""Domain comparison for sender authentication: strict IDNA A-labels and DMARC alignment.

Organisational domains come from the Public Suffix List shipped inside the
``publicsuffixlist`` package (offline; nothing is downloaded at run time).
"""
from __future__ import annotations

import functools

import idna
from publicsuffixlist import PublicSuffixList


@functools.lru_cache(maxsize=1)
def _psl() -> PublicSuffixList:
    return PublicSuffixList()


def ace(domain: str) -> str:
    """Lowercase A-label form (strict IDNA 2008, no mapping); unconvertible names are kept
    as given, lowercased, so they can only ever equal themselves."""
    domain = (domain or "").strip().rstrip(".").lower()
    if domain.isascii():
        return domain
    try:
        return idna.encode(domain, uts46=False).decode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError):
        return domain


def org_domain(domain: str) -> str:
    domain = ace(domain)
    return _psl().privatesuffix(domain) or domain


def aligned(domain: str, from_domain: str, mode: str = "r") -> bool:
    """DMARC identifier alignment: strict (``s``) equal names, relaxed equal org domains."""
    a, b = ace(domain), ace(from_domain)
    if not a or not b:
        return False
    if mode == "s":
        return a == b
    return org_domain(a) == org_domain(b)
