"""Step: parse the raw bytes once; defects are kept, never fatal.

`policy.default` raises on some hostile headers (e.g. ``Content-Type: text/plain; title*``);
such a message is parsed again with the lenient `compat32` policy, which the attachment
stripper also handles, and the fallback is recorded as a defect.
"""
from __future__ import annotations

import email
import email.policy


def parse_bytes(raw: bytes):
    try:
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        for name in ("From", "Subject", "Message-ID", "Content-Type"):
            msg.get_all(name)  # header objects are built lazily; force them now
        return msg, []
    except Exception as e:
        return (email.message_from_bytes(raw, policy=email.policy.compat32),
                [f"ParseFallback:{type(e).__name__}"])


def parse_message(ctx) -> None:
    cached = getattr(ctx.inbound, "_parsed", None)
    if cached is None:
        cached = ctx.inbound._parsed = parse_bytes(ctx.inbound.raw)
    ctx.msg, extra = cached
    ctx.defects = [type(d).__name__ for d in ctx.msg.defects] + extra
