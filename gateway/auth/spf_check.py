"""SPF with pyspf, its DNS look-ups sent through the gateway's one resolver.

pyspf calls a module-level ``DNSLookup``; it is pointed once at a dispatcher that uses the
resolver of the check running in this thread, so every query keeps our timeouts and servers.
"""
from __future__ import annotations

import threading

import spf

from gateway.auth.domains import ace
from gateway.auth.resolver import DNSTempError

_current = threading.local()


def _lookup(name, qtype, tcpfallback=True, timeout=30):
    resolver = getattr(_current, "resolver", None)
    if resolver is None:
        raise spf.TempError("DNS resolver not set")
    try:
        rdatas = resolver.query(str(name), qtype)
    except DNSTempError as error:
        raise spf.TempError(f"DNS {error}") from error
    out = []
    for r in rdatas:
        if qtype in ("A", "AAAA"):
            out.append(((name, qtype), r.address))
        elif qtype == "MX":
            out.append(((name, qtype), (r.preference, r.exchange)))
        elif qtype == "PTR":
            out.append(((name, qtype), r.target.to_text(True)))
        elif qtype in ("TXT", "SPF"):
            out.append(((name, qtype), r.strings))
        elif qtype == "CNAME":
            out.append(((name, qtype), r.target.to_text(True)))
    return out


spf.DNSLookup = _lookup


def check(resolver, client_ip: str, mail_from: str, helo: str) -> tuple[str, str]:
    """(result, domain checked): pass, fail, softfail, neutral, none, temperror, permerror.
    The MAIL FROM domain is checked, or the HELO name for the null sender."""
    if not client_ip:
        return "none", ""
    sender = mail_from or (f"postmaster@{helo}" if helo else "")
    if not sender:
        return "none", ""
    _current.resolver = resolver
    try:
        result, _explanation = spf.check2(i=client_ip, s=sender, h=helo or "unknown",
                                          timeout=resolver.timeout)
    finally:
        _current.resolver = None
    return result, ace(sender.rpartition("@")[2])
