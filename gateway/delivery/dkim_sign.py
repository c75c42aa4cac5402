"""Optional DKIM signing of outgoing mail (dkimpy), applied just before delivery."""
from __future__ import annotations

import dkim

SIGNED_HEADERS = [b"from", b"to", b"subject", b"date", b"message-id", b"reply-to",
                  b"in-reply-to", b"references", b"mime-version", b"content-type",
                  b"auto-submitted"]


class Signer:
    def __init__(self, cfg):
        d = cfg.delivery
        self.selector = d.dkim_selector.encode()
        self.domain = (d.dkim_domain or cfg.gateway.domain).encode()
        self.key = cfg.resolve(d.dkim_key_file).read_bytes()

    def sign(self, raw: bytes) -> bytes:
        header = dkim.sign(raw, self.selector, self.domain, self.key,
                           include_headers=SIGNED_HEADERS)
        return header + raw


def make_signer(cfg) -> Signer | None:
    return Signer(cfg) if cfg.delivery.dkim_selector else None
