"""Steps: set quoted history and signature aside and score the new text against the rules
(content steps, before the transaction); then decide with the thread's context."""
from __future__ import annotations

from gateway.classification import split_reply
from gateway.content.mime import header_text


def subject_of(msg) -> str:
    try:
        return header_text(msg, "Subject") or ""
    except Exception:
        return ""


def split_text(ctx) -> None:
    """Content step: the new text and the quoted history below it."""
    ctx.new_text, ctx.history = split_reply(ctx.stripped.text)


def score_text(ctx) -> None:
    """Content step: which rules the new text and the subject match (the costly part)."""
    ctx.scores = ctx.services.classifier.score(ctx.new_text, subject=subject_of(ctx.msg))


def classify_message(ctx) -> None:
    """Decision step: the category, with the thread's context (a reply to a lab-result
    notification leans to results)."""
    kind = ctx.token_thread.kind if ctx.token_thread is not None else None
    if ctx.scores is None:  # no content phase ran (a caller building contexts by hand)
        score_text(ctx)
    ctx.classification = ctx.services.classifier.decide(ctx.scores, context_kind=kind)
