"""The listeners' TLS context: STARTTLS is offered when a certificate is configured."""
from __future__ import annotations

import ssl


def server_tls(cfg) -> ssl.SSLContext | None:
    if not cfg.smtp.tls_cert_file:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cfg.resolve(cfg.smtp.tls_cert_file)),
                        str(cfg.resolve(cfg.smtp.tls_key_file)))
    return ctx
