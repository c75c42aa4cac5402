"""Step: parse the raw bytes once (policy.default); defects are kept, never fatal."""
from __future__ import annotations

import email
import email.policy


def parse_message(ctx) -> None:
    cached = getattr(ctx.inbound, "_parsed", None)
    if cached is None:
        cached = email.message_from_bytes(ctx.inbound.raw, policy=email.policy.default)
        ctx.inbound._parsed = cached
    ctx.msg = cached
    ctx.defects = [type(d).__name__ for d in cached.defects]
