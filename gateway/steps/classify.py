"""Step: set quoted history and signature aside, then classify the new text."""
from __future__ import annotations

from gateway.classification import split_reply


def subject_of(msg) -> str:
    try:
        return str(msg.get("Subject", "") or "")
    except Exception:
        return ""


def classify_message(ctx) -> None:
    ctx.new_text, ctx.history = split_reply(ctx.stripped.text)
    kind = ctx.token_thread.kind if ctx.token_thread is not None else None
    ctx.classification = ctx.services.classifier.classify(
        ctx.new_text, subject=subject_of(ctx.msg), context_kind=kind)
