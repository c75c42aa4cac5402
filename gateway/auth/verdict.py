"""The sender-authentication verdict for one message: pass, fail or none."""
from __future__ import annotations

import re
from dataclasses import dataclass

import dkim

_RESULT = re.compile(r"\b(dmarc|dkim|spf)\s*=\s*([a-z]+)([^;]*)", re.I)
_PROP = re.compile(r"\b(header\.from|header\.d|header\.i|smtp\.mailfrom)\s*=\s*([^\s;]+)", re.I)


@dataclass(frozen=True)
class Verdict:
    result: str  # pass | fail | none
    detail: str  # short id for logs and the security alert, never an address


def org_domain(domain: str) -> str:
    """A simple organisational domain (last two labels; three under two-letter SLDs)."""
    labels = domain.lower().strip(".").split(".")
    if len(labels) >= 3 and len(labels[-1]) == 2 and len(labels[-2]) <= 3:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


def aligned(a: str, b: str) -> bool:
    return bool(a) and bool(b) and org_domain(a) == org_domain(b)


def _authserv_id(header: str) -> str:
    return header.split(";", 1)[0].strip().split()[0].lower() if header.strip() else ""


def from_upstream(msg, from_domain: str, trusted: list[str]) -> Verdict:
    """Read Authentication-Results written by a trusted authserv-id; ignore all others."""
    trusted_ids = {t.lower() for t in trusted}
    results = []
    for value in msg.get_all("Authentication-Results") or []:
        value = str(value)
        if _authserv_id(value) not in trusted_ids:
            continue
        for method, result, rest in _RESULT.findall(value):
            props = {k.lower(): v.strip("<>").rpartition("@")[2] for k, v in _PROP.findall(rest)}
            results.append((method.lower(), result.lower(), props))
    for method, result, props in results:
        if method == "dmarc" and result in ("fail", "pass"):
            return Verdict(result, f"upstream-dmarc-{result}")
    for method, result, props in results:
        domain = props.get("header.d") or props.get("header.i") or props.get("smtp.mailfrom")
        if method in ("dkim", "spf") and result == "pass" and aligned(domain, from_domain):
            return Verdict("pass", f"upstream-{method}-aligned")
    return Verdict("none", "upstream-no-verdict" if results else "upstream-no-results")


def dmarc_policy(resolver, domain: str) -> str | None:
    for name in (f"_dmarc.{domain}", f"_dmarc.{org_domain(domain)}"):
        for record in resolver.txt(name):
            text = record.decode("ascii", "replace")
            if text.lower().startswith("v=dmarc1"):
                tags = dict(t.strip().split("=", 1) for t in text.split(";") if "=" in t)
                return tags.get("p", "none").strip().lower()
    return None


def verify(raw: bytes, msg, from_domain: str, resolver) -> Verdict:
    """DKIM signatures aligned with the From domain, then the domain's DMARC policy."""
    def dnsfunc(name, timeout=5):
        records = resolver.txt(name.decode() if isinstance(name, bytes) else name)
        return records[0] if records else b""
    for index, header in enumerate(msg.get_all("DKIM-Signature") or []):
        match = re.search(r"\bd=([^;\s]+)", str(header))
        if not match or not aligned(match.group(1), from_domain):
            continue
        try:
            if dkim.DKIM(raw).verify(idx=index, dnsfunc=dnsfunc):
                return Verdict("pass", "dkim-aligned")
        except Exception:
            continue
    policy = dmarc_policy(resolver, from_domain)
    if policy in ("reject", "quarantine"):
        return Verdict("fail", f"dmarc-{policy}")
    return Verdict("none", "dmarc-none" if policy else "no-dmarc-record")
