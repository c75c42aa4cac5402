"""TLS policy shared by IMAP pull and IMAP APPEND: TLS always, verified certificates,
plaintext only when the account allows it and the server is on this machine."""
from __future__ import annotations

import ssl

from gateway.config import is_loopback


class TlsRequired(Exception):
    """The server cannot do TLS and plaintext is not allowed: refused, never downgraded."""


def plaintext_allowed(acct) -> bool:
    return bool(acct.allow_plaintext_loopback) and is_loopback(acct.host)


def context(acct) -> ssl.SSLContext:
    """A verifying client context; `ca_file` adds CAs to the system's (self-signed servers)."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if acct.ca_file:
        ctx.load_verify_locations(cafile=acct.ca_file)
    return ctx


def check_plaintext(acct) -> None:
    """Raise TlsRequired unless a plaintext session with this account is allowed."""
    if not plaintext_allowed(acct):
        raise TlsRequired(f"imap account {acct.name}: the server offers no TLS; plaintext "
                          "is allowed only with allow_plaintext_loopback on a loopback host")
