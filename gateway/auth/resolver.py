"""DNS TXT look-ups, replaceable in tests (the public DNS cannot exist here)."""
from __future__ import annotations

import dns.exception
import dns.resolver


class Resolver:
    def __init__(self, timeout: float = 5.0):
        self.timeout = timeout

    def txt(self, name: str) -> list[bytes]:
        try:
            answer = dns.resolver.resolve(name.rstrip("."), "TXT", lifetime=self.timeout)
        except (dns.exception.DNSException, OSError):
            return []
        return [b"".join(r.strings) for r in answer]


class StaticResolver(Resolver):
    """Answers from a dict name -> list of TXT strings (tests, offline use)."""

    def __init__(self, records: dict[str, list[bytes]]):
        super().__init__()
        self.records = {k.rstrip(".").lower(): v for k, v in records.items()}

    def txt(self, name: str) -> list[bytes]:
        return list(self.records.get(name.rstrip(".").lower(), []))
