"""Retention of what belongs to no ended thread (see gateway.retention).

Past the cutoff these lose their text, with one audit row for the whole run:
- ``messages_without_thread``: subject, body and history of messages filed under no thread;
- ``other_outbox_mails``: the raw bytes of sent or failed mail that has no thread (invites,
  suspension notices, undeliverable notices) or whose thread never got a message (a portal
  notification nobody answered);
- ``attachment_names_without_thread``: file names of attachments of those messages;
- ``quarantined``: raw bytes and envelope sender of quarantined messages last seen before
  the cutoff (a held message then can no longer be retried).
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import exists, func, or_, select, update

from gateway import audit
from gateway.models import Attachment, Message, Outbox, Quarantine, Thread


def _targets(cutoff: dt.datetime) -> dict:
    """kind -> (model, where-clause, values to set)."""
    threadless = Message.thread_id.is_(None)
    has_text = or_(Message.body.is_not(None), Message.subject.is_not(None),
                   Message.history.is_not(None))
    silent_thread = (select(Thread.id).where(
        Thread.state == "waiting", Thread.created_at < cutoff,
        ~exists().where(Message.thread_id == Thread.id)))
    old_messages = select(Message.id).where(threadless, Message.received_at < cutoff)
    return {
        "messages_without_thread": (Message, (threadless, Message.received_at < cutoff,
                                              has_text),
                                    {"subject": None, "body": None, "history": None}),
        "other_outbox_mails": (Outbox, (Outbox.state.in_(("sent", "failed")),
                                        Outbox.created_at < cutoff, func.length(Outbox.raw) > 0,
                                        or_(Outbox.thread_id.is_(None),
                                            Outbox.thread_id.in_(silent_thread))),
                               {"raw": b""}),
        "attachment_names_without_thread": (Attachment, (
            Attachment.message_id.in_(old_messages), Attachment.filename.is_not(None)),
            {"filename": None}),
        "quarantined": (Quarantine, (Quarantine.last_at < cutoff, or_(
            Quarantine.raw.is_not(None), Quarantine.mail_from.is_not(None))),
            {"raw": None, "mail_from": None}),
    }


def purge_loose(session, cutoff: dt.datetime, dry_run: bool, actor: str, days: int) -> dict:
    counts = {}
    for kind, (model, where, values) in _targets(cutoff).items():
        counts[kind] = session.scalar(select(func.count()).select_from(model)
                                      .where(*where)) or 0
        if counts[kind] and not dry_run:
            session.execute(update(model).where(*where).values(values)
                            .execution_options(synchronize_session=False))
    if any(counts.values()) and not dry_run:
        audit.record(session, actor, "retention.purged", "retention", None, None,
                     retention_days=days, **counts)
    return counts
