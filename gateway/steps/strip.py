"""Content step: remove every attachment; only the patient's text goes on."""
from __future__ import annotations

from gateway.content.strip import strip_message


def strip_attachments(ctx) -> None:
    ctx.stripped = strip_message(ctx.msg, check=ctx.budget.check if ctx.budget else None)
