"""The one DNS resolver for sender authentication (SPF, DKIM keys, DMARC records).

dnspython with a whole-query lifetime; ``[policy] dns_servers`` may name the resolvers
(``host`` or ``host:port``), else the system's are used.  "No such name" and "no record" are
answers (empty lists); a timeout, SERVFAIL or no reachable server raise ``DNSTempError``,
which the gateway turns into ``451 4.3.0``, never a pass.
"""
from __future__ import annotations

import dns.exception
import dns.name
import dns.resolver


class DNSTempError(Exception):
    """DNS could not answer now: the sender should retry."""


class Resolver:
    def __init__(self, timeout: float = 5.0, servers: list[str] | None = None):
        self.timeout = timeout
        self._resolver = dns.resolver.Resolver(configure=not servers)
        if servers:
            hosts, ports = [], set()
            for server in servers:
                host, _, port = server.rpartition(":") if server.count(":") == 1 \
                    else (server, "", "")
                hosts.append(host)
                ports.add(int(port) if port else 53)
            self._resolver.nameservers = hosts
            self._resolver.port = ports.pop() if len(ports) == 1 else 53
        self._resolver.lifetime = timeout
        self._resolver.timeout = timeout
        self._resolver.cache = None

    @classmethod
    def from_config(cls, policy) -> "Resolver":
        return cls(policy.dns_timeout_seconds, list(policy.dns_servers))

    def query(self, name: str, qtype: str) -> list:
        """The answer's rdata for NAME/QTYPE; [] when there is none."""
        try:
            answer = self._resolver.resolve(dns.name.from_text(name.rstrip(".") + "."),
                                            qtype, lifetime=self.timeout,
                                            raise_on_no_answer=False, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.name.NameTooLong:
            return []
        except (dns.exception.DNSException, OSError) as error:
            raise DNSTempError(type(error).__name__) from error
        return list(answer) if answer.rrset is not None else []

    def txt(self, name: str) -> list[bytes]:
        return [b"".join(r.strings) for r in self.query(name, "TXT")]
