"""Before the transaction: the sender's authentication verdict (SPF/DKIM/DMARC, DNS).

Waiting on DNS needs no database, so it happens before the decision is written; the
chain's own steps (read_sender, skip_duplicate, authenticate_sender) still decide, in their
order, and `authenticate_sender` uses the verdict found here when it is for the same From.
Anything unusual (no single plain From, a content error, a verdict that raised) is left to
the chain, which then does what it always did.
"""
from __future__ import annotations

from gateway.auth.strict import header_block_error
from gateway.steps.admit import header_sender
from gateway.steps.authenticate import verdict_for


def verdict_before_transaction(ctx) -> None:
    if ctx.content_error is not None or ctx.msg is None or ctx.inbound.authenticated_user:
        return
    if header_block_error(ctx.inbound.raw) is not None:
        return
    sender = header_sender(ctx.msg)
    if sender is None:
        return
    ctx.sender = sender
    try:
        ctx.verdict = (sender, verdict_for(ctx))
    except Exception:  # the chain meets it again, where it always did
        ctx.verdict = None
    finally:
        ctx.sender = None
