"""The verdict, and ``verify`` mode: SPF (pyspf), DKIM (dkimpy) and DMARC alignment, checked in the gateway.

The verdict is about the header From domain: ``pass`` when an SPF or DKIM pass is aligned
with it (relaxed or strict, as its DMARC record says; organisational domains from the
offline Public Suffix List), ``fail`` when the domain publishes ``p=quarantine`` or
``p=reject`` and nothing aligned passed, ``temperror`` when DNS could not answer (a 451,
never a pass), else ``none``.  A DKIM signature with ``l=`` never counts: text appended
after the signed length would ride on it.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import authres
import authres.dmarc
import dkim

from gateway.auth import spf_check
from gateway.auth.domains import ace, aligned, org_domain
from gateway.auth.resolver import DNSTempError

log = logging.getLogger("gateway.auth")
MAX_SIGNATURES = 5  # each costs a DNS query; a sender could add hundreds


@dataclass(frozen=True)
class Verdict:
    result: str  # pass | fail | none | temperror
    detail: str  # short id for logs and the security alert, never an address
    # (method, result, domain) for the staff copy's Authentication-Results header
    results: tuple = ()


def results_header(authserv_id: str, verdict: Verdict) -> str | None:
    """The value of an Authentication-Results header (RFC 8601, written with authres)."""
    if not verdict.results:
        return None
    made = {"dkim": lambda r, d: authres.DKIMAuthenticationResult(result=r, header_d=d),
            "spf": lambda r, d: authres.SPFAuthenticationResult(result=r, smtp_mailfrom=d),
            "dmarc": lambda r, d: authres.dmarc.DMARCAuthenticationResult(result=r,
                                                                          header_from=d)}
    header = authres.AuthenticationResultsHeader(
        authserv_id=authserv_id,
        results=[made[m](r, d or None) for m, r, d in verdict.results])
    return str(header).partition(":")[2].strip()


def dmarc_record(resolver, domain: str) -> dict | None:
    """The DMARC tags for DOMAIN (its own record, else its organisational domain's)."""
    names = [f"_dmarc.{domain}"]
    if org_domain(domain) != domain:
        names.append(f"_dmarc.{org_domain(domain)}")
    for index, name in enumerate(names):
        records = [r.decode("ascii", "replace") for r in resolver.txt(name)]
        records = [r for r in records if r.replace(" ", "").lower().startswith("v=dmarc1")]
        if len(records) == 1:
            tags = {}
            for part in records[0].split(";"):
                key, eq, value = part.partition("=")
                if eq:
                    tags[key.strip().lower()] = value.strip().lower()
            if index == 1 and "sp" in tags:
                tags["p"] = tags["sp"]
            return tags
    return None


def dkim_passes(raw: bytes, msg, resolver) -> list[str]:
    """Domains (A-labels) of the DKIM signatures that verify, ``l=`` signatures left out."""
    def dnsfunc(name, timeout=5):
        records = resolver.txt(name.decode() if isinstance(name, bytes) else name)
        return records[0] if records else b""
    passed = []
    count = len(msg.get_all("DKIM-Signature") or [])
    for index in range(min(count, MAX_SIGNATURES)):
        checker = dkim.DKIM(raw, timeout=resolver.timeout)
        try:
            ok = checker.verify(idx=index, dnsfunc=dnsfunc)
        except DNSTempError:
            raise
        except Exception:  # malformed signature, bad key: this one does not count
            continue
        fields = getattr(checker, "signature_fields", {}) or {}
        if ok and b"l" not in fields and checker.domain:
            passed.append(ace(checker.domain.decode("ascii", "replace")))
    return passed


def verify(raw: bytes, msg, from_domain: str, resolver, *, client_ip: str = "",
           mail_from: str = "", helo: str = "") -> Verdict:
    from_domain = ace(from_domain)
    try:
        dmarc = dmarc_record(resolver, from_domain)
        dkim_domains = dkim_passes(raw, msg, resolver)
        spf_result, spf_domain = spf_check.check(resolver, client_ip, mail_from, helo)
    except DNSTempError as error:
        log.info("sender authentication tempfailed", extra={"error": str(error)})
        return Verdict("temperror", "dns-temperror")
    tags = dmarc or {}
    dkim_ok = any(aligned(d, from_domain, tags.get("adkim", "r")) for d in dkim_domains)
    spf_ok = spf_result == "pass" and aligned(spf_domain, from_domain, tags.get("aspf", "r"))
    policy = tags.get("p", "none") if dmarc is not None else None
    dmarc_result = "pass" if dkim_ok or spf_ok else ("fail" if dmarc else "none")
    results = (("dkim", "pass" if dkim_domains else "none", dkim_domains[0] if dkim_domains
               else ""), ("spf", spf_result, spf_domain), ("dmarc", dmarc_result, from_domain))
    if dkim_ok or spf_ok:
        return Verdict("pass", "dkim-aligned" if dkim_ok else "spf-aligned", results)
    if spf_result == "temperror":
        return Verdict("temperror", "spf-temperror", results)
    if policy in ("reject", "quarantine"):
        return Verdict("fail", f"dmarc-fail-{policy}", results)
    return Verdict("none", f"dmarc-fail-{policy}" if policy else "no-dmarc-record", results)


def from_upstream(msg, from_domain: str, trusted_ids, trusted_hosts) -> Verdict:
    from gateway.auth.upstream import from_upstream as read
    return read(msg, from_domain, trusted_ids, trusted_hosts)
