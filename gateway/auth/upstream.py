"""``upstream`` mode: believe the practice's own MTA, and only where it speaks.

An Authentication-Results header counts only when its authserv-id is trusted AND it sits
above every Received header that the trusted MTA did not add (anything below the first
foreign Received line came with the message, so a sender could have written it).  Only
results about the message's own From domain count: ``dmarc`` with ``header.from`` equal to
it, or ``dkim``/``spf`` passes aligned with it.  A ``fail`` among them wins over a pass.
The MTA must also strip incoming A-R headers carrying its id (docs/deploy.md).
"""
from __future__ import annotations

import re

import authres

from gateway.auth.domains import ace, aligned
from gateway.auth.verdict import Verdict

_BY = re.compile(r"\bby\s+([^\s;()]+)", re.I)


def _received_by_trusted(value: str, hosts: set[str]) -> bool:
    match = _BY.search(" ".join(value.split()))
    return bool(match) and match.group(1).lower().rstrip(".") in hosts


def trusted_headers(msg, trusted_ids, trusted_hosts) -> list:
    """The parsed A-R headers that count, top to bottom."""
    ids = {t.lower() for t in trusted_ids}
    hosts = {h.lower().rstrip(".") for h in trusted_hosts}
    found = []
    for name, value in msg.raw_items():
        name = name.lower()
        value = " ".join(str(value).split())
        if name == "received" and not _received_by_trusted(value, hosts):
            break  # everything below came with the message
        if name != "authentication-results":
            continue
        try:
            header = authres.AuthenticationResultsHeader.parse(
                "Authentication-Results: " + value)
        except Exception:  # unparseable: says nothing
            continue
        if str(header.authserv_id).lower() in ids:
            found.append(header)
    return found


def _prop(result, ptype: str, name: str) -> str:
    for prop in result.properties:
        if prop.type.lower() == ptype and prop.name.lower() == name:
            return ace(str(prop.value).strip("<>").rpartition("@")[2])
    return ""


def from_upstream(msg, from_domain: str, trusted_ids, trusted_hosts) -> Verdict:
    from_domain = ace(from_domain)
    outcomes = []
    headers = trusted_headers(msg, trusted_ids, trusted_hosts)
    for header in headers:
        for result in header.results:
            method, value = result.method.lower(), result.result.lower()
            if method == "dmarc" and _prop(result, "header", "from") == from_domain:
                outcomes.append((value, "upstream-dmarc"))
            elif method == "dkim" and value == "pass" and aligned(
                    _prop(result, "header", "d") or _prop(result, "header", "i"), from_domain):
                outcomes.append(("pass", "upstream-dkim-aligned"))
            elif method == "spf" and value == "pass" and aligned(
                    _prop(result, "smtp", "mailfrom"), from_domain):
                outcomes.append(("pass", "upstream-spf-aligned"))
    results = [r for r, _ in outcomes]
    for wanted in ("fail", "temperror", "pass"):
        if wanted in results:
            detail = dict((r, d) for r, d in outcomes)[wanted]
            return Verdict(wanted, f"{detail}-{wanted}")
    return Verdict("none", "upstream-no-verdict" if headers else "upstream-no-results")
