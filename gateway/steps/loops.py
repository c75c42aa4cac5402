"""Step: recognise automatic mail (RFC 3834), which is stored but never answered."""
from __future__ import annotations

AUTO_PRECEDENCE = {"bulk", "junk", "list"}


def is_automatic(msg, mail_from: str, own) -> bool:
    auto = str(msg.get("Auto-Submitted", "no")).split(";")[0].strip().lower()
    if auto and auto != "no":
        return True
    if str(msg.get("Precedence", "")).strip().lower() in AUTO_PRECEDENCE:
        return True
    if not mail_from:
        return True
    return own(mail_from)


def detect_automatic(ctx) -> None:
    ctx.automatic = is_automatic(ctx.msg, ctx.inbound.mail_from,
                                 ctx.services.addresses.is_own)
