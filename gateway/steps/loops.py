"""Step: recognise automatic mail (RFC 3834), which is stored but never answered."""
from __future__ import annotations

from gateway.content.mime import header_text

AUTO_PRECEDENCE = {"bulk", "junk", "list"}


def is_automatic(msg, mail_from: str, own) -> bool:
    auto = header_text(msg, "Auto-Submitted")
    auto = ("no" if auto is None else auto).split(";")[0].strip().lower()
    if auto and auto != "no":
        return True
    if (header_text(msg, "Precedence") or "").strip().lower() in AUTO_PRECEDENCE:
        return True
    if not mail_from:
        return True
    return own(mail_from)


def detect_automatic(ctx) -> None:
    ctx.automatic = is_automatic(ctx.msg, ctx.inbound.mail_from,
                                 ctx.services.addresses.is_own)
