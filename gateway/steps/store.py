"""Step: store the patient's text and the attachment log (never the attachment bytes)."""
from __future__ import annotations

import hashlib

from sqlalchemy import insert

from gateway import audit
from gateway.content.mime import header_text
from gateway.models import Attachment, Message, utcnow
from gateway.steps.classify import subject_of

_MESSAGES, _ATTACHMENTS = Message.__table__, Attachment.__table__


def store_message(ctx) -> None:
    cls = ctx.classification
    values = dict(
        thread_id=ctx.thread.id, patient_id=ctx.patient.id, direction="patient",
        proxy_id=ctx.proxy.id if ctx.proxy is not None else None,
        source=ctx.inbound.source,
        message_id=(header_text(ctx.msg, "Message-ID") or "")[:998] or None,
        subject=subject_of(ctx.msg), body=ctx.new_text, history=ctx.history,
        category=cls.category, urgent=cls.urgent,
        rules=[{"id": h.id, "score": h.score} for h in cls.hits],
        automatic=ctx.automatic, raw_sha256=hashlib.sha256(ctx.inbound.raw).hexdigest(),
        sender_auth="unverified" if ctx.unverified else (ctx.auth.result if ctx.auth else None),
        received_at=utcnow())
    actor = "smtp" if ctx.inbound.source == "smtp" else ctx.inbound.source
    ctx.message = insert_message(ctx.session, values, ctx.stripped.removed, actor)
    audit.record(ctx.session, actor,
                 "message.accepted", "message", ctx.message.id, ctx.patient.id,
                 thread=ctx.thread.public_id, category=cls.category,
                 attachments_removed=len(ctx.stripped.removed))


def insert_message(session, values: dict, removed, actor: str) -> Message:
    """The message row and its attachment log, with Core statements (one for the message,
    one for all its attachments); returns the message as written (detached)."""
    if session.new:  # its thread must be in the database first
        session.flush()
    conn = session.connection()
    message_id = conn.execute(insert(_MESSAGES).returning(_MESSAGES.c.id),
                              values).scalar_one()
    if removed:
        now = utcnow()
        rows = [dict(message_id=message_id, filename=item.filename,
                     declared_type=item.declared_type, sniffed_type=item.sniffed_type,
                     size=item.size, sha256=item.sha256, reason=item.reason, created_at=now)
                for item in removed]
        ids = conn.execute(insert(_ATTACHMENTS).returning(
            _ATTACHMENTS.c.id, sort_by_parameter_order=True), rows).scalars().all()
        for row_id, item in zip(ids, removed):
            audit.record(session, actor, "attachment.removed", "attachment", row_id,
                         values["patient_id"], message=message_id, reason=item.reason)
    return Message(id=message_id, **values)
