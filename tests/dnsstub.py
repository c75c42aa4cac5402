"""A small authoritative DNS server on 127.0.0.1 (dnslib) for sender-authentication tests.

Real UDP, real wire format: the gateway's resolver, dkimpy and pyspf query it exactly as they
would query the internet.  ``records`` maps (name, type) to a list of TXT strings (or IP
addresses for A); names in ``servfail`` answer SERVFAIL, names in ``silent`` never answer.
"""
from __future__ import annotations

from dnslib import QTYPE, RCODE, RR, A, TXT
from dnslib.server import BaseResolver, DNSLogger, DNSServer


class StubResolver(BaseResolver):
    def __init__(self):
        self.records: dict[tuple[str, str], list] = {}
        self.servfail: set[str] = set()
        self.silent: set[str] = set()

    def txt(self, name: str, *values) -> None:
        self.records[(name.lower().rstrip("."), "TXT")] = [
            v.encode() if isinstance(v, str) else v for v in values]

    def resolve(self, request, handler):
        name = str(request.q.qname).lower().rstrip(".")
        qtype = QTYPE[request.q.qtype]
        reply = request.reply()
        if name in self.silent:
            return None  # dnslib sends nothing: the client times out
        if name in self.servfail:
            reply.header.rcode = RCODE.SERVFAIL
            return reply
        values = self.records.get((name, qtype))
        if values is None:
            if not any(key[0] == name for key in self.records):
                reply.header.rcode = RCODE.NXDOMAIN
            return reply
        for value in values:
            if qtype == "TXT":
                chunks = [value[i:i + 255] for i in range(0, len(value), 255)] or [b""]
                reply.add_answer(RR(request.q.qname, QTYPE.TXT, rdata=TXT(chunks), ttl=60))
            elif qtype == "A":
                reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(value), ttl=60))
        return reply


class DNSStub:
    def __init__(self):
        self.resolver = StubResolver()
        self.server = DNSServer(self.resolver, port=0, address="127.0.0.1",
                                logger=DNSLogger("-request,-reply,-truncated,-error,-recv,"
                                                 "-send,-data", prefix=False))
        self.server.start_thread()
        self.port = self.server.server.server_address[1]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.stop()
