"""Content step: parse the raw bytes once, with the MIME shape bounded while parsing.

Too deep a nesting or too many parts is a decision (``554 5.6.0``), the same for every
sender; any other parser problem is a defect, never fatal (see gateway.content.mime).
"""
from __future__ import annotations

from gateway.content.mime import MimeLimit
from gateway.content.mime import parse_bytes as _parse_bytes
from gateway.decisions import MIME_TOO_DEEP, MIME_TOO_MANY_PARTS, Reject


def mime_refusal(limit: MimeLimit) -> Reject:
    if limit.kind == "depth":
        return Reject(MIME_TOO_DEEP, "mime-depth")
    return Reject(MIME_TOO_MANY_PARTS, "mime-parts")


def parse_bytes(raw: bytes, smtp=None):
    """(message, extra defects) within ``[smtp]``'s MIME limits; raises Reject."""
    depth = smtp.max_mime_depth if smtp is not None else 20
    parts = smtp.max_mime_parts if smtp is not None else 1000
    try:
        return _parse_bytes(raw, depth, parts)
    except MimeLimit as limit:
        raise mime_refusal(limit) from None


def parse_message(ctx) -> None:
    ctx.msg, extra = parse_bytes(ctx.inbound.raw, ctx.services.cfg.smtp)
    ctx.defects = [type(d).__name__ for d in ctx.msg.defects] + extra
