"""Step: store the patient's text and the attachment log (never the attachment bytes)."""
from __future__ import annotations

import hashlib

from gateway.content.mime import header_text
from gateway import audit
from gateway.models import Attachment, Message
from gateway.steps.classify import subject_of


def store_message(ctx) -> None:
    cls = ctx.classification
    message = Message(
        thread_id=ctx.thread.id, patient_id=ctx.patient.id, direction="patient",
        proxy_id=ctx.proxy.id if ctx.proxy is not None else None,
        source=ctx.inbound.source,
        message_id=(header_text(ctx.msg, "Message-ID") or "")[:998] or None,
        subject=subject_of(ctx.msg), body=ctx.new_text, history=ctx.history,
        category=cls.category, urgent=cls.urgent,
        rules=[{"id": h.id, "score": h.score} for h in cls.hits],
        automatic=ctx.automatic, raw_sha256=hashlib.sha256(ctx.inbound.raw).hexdigest(),
        sender_auth="unverified" if ctx.unverified else (ctx.auth.result if ctx.auth else None))
    ctx.session.add(message)
    ctx.session.flush()
    actor = "smtp" if ctx.inbound.source == "smtp" else ctx.inbound.source
    for item in ctx.stripped.removed:
        row = Attachment(
            message_id=message.id, filename=item.filename, declared_type=item.declared_type,
            sniffed_type=item.sniffed_type, size=item.size, sha256=item.sha256,
            reason=item.reason)
        ctx.session.add(row)
        ctx.session.flush()
        audit.record(ctx.session, actor, "attachment.removed", "attachment", row.id,
                     ctx.patient.id, message=message.id, reason=item.reason)
    audit.record(ctx.session, actor,
                 "message.accepted", "message", message.id, ctx.patient.id,
                 thread=ctx.thread.public_id, category=cls.category,
                 attachments_removed=len(ctx.stripped.removed))
    ctx.message = message
