"""A real aiosmtpd server on loopback acting as the smarthost, misbehaving on request."""
from __future__ import annotations

import asyncio
import ssl
import subprocess
from email import message_from_bytes
from pathlib import Path

from aiosmtpd.smtp import SMTP


def make_cert(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "relay.crt", folder / "relay.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


class RelayHandler:
    """Answers DATA from `script` (then 250 forever); 'drop' closes the connection."""

    def __init__(self, script=()):
        self.script = list(script)
        self.received: list[tuple[str, list[str], bytes]] = []
        self.mail_commands = 0
        self.tls_sessions = 0

    async def handle_MAIL(self, server, session, envelope, address, options):
        self.mail_commands += 1
        if session.ssl:
            self.tls_sessions += 1
        envelope.mail_from = address
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        action = self.script.pop(0) if self.script else "250 OK"
        if action == "drop":
            server.transport.close()
            return "451 gone"
        if action.startswith("250"):
            self.received.append((envelope.mail_from, list(envelope.rcpt_tos),
                                  envelope.original_content))
        return action

    def outbox_ids(self) -> list[str]:
        return [message_from_bytes(raw)["X-Portal-Outbox"] for _, _, raw in self.received]


async def start_relay(handler, tls_cert: tuple[Path, Path] | None = None,
                      implicit: bool = False):
    ctx = None
    if tls_cert:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(tls_cert[0]), str(tls_cert[1]))
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="relay.test", tls_context=None if implicit else ctx,
                     require_starttls=False),
        host="127.0.0.1", port=0, ssl=ctx if implicit else None)
    return server, server.sockets[0].getsockname()[1]
