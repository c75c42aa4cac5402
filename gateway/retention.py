"""Retention: message text is purged ``[gateway] retention_days`` after its thread
ended (answered or closed); metadata (who, when, category, rules, attachment log) and the
audit trail stay.

A thread ended at the latest of: its answer time, its last "thread.closed" audit row, and
its newest message.  A thread that was answered and then written to again is open again,
so it is not touched.  Purged: ``messages.subject``, ``body`` and ``history``, the file
names in the attachment log (type, size, SHA-256 and reason stay), and the raw bytes of the
thread's sent or failed outbox mail (staff copies and answers carry the same text).  Each
purged thread gets one audit row.

Mail that belongs to no ended thread goes the same way once it is older than the cutoff
(gateway/retention_loose.py): messages without a thread, sent or failed outbox mail
without a thread (invites, suspension notices with their reason, undeliverable notices)
or of a notification thread that never got a message, and the raw bytes and envelope
sender of quarantined messages.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import func, or_, select, update

from gateway import audit
from gateway.models import Attachment, Audit, Message, Outbox, Thread, utcnow
from gateway.retention_loose import purge_loose

ENDED_STATES = ("answered", "closed")


@dataclass
class PurgeReport:
    cutoff: dt.datetime | None
    threads: int = 0
    messages: int = 0
    outbox: int = 0
    attachment_names: int = 0
    loose: dict = field(default_factory=dict)  # kind -> count (gateway.retention_loose)
    thread_ids: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"cutoff": self.cutoff, "threads": self.threads, "messages": self.messages,
                "outbox_mails": self.outbox, "attachment_names": self.attachment_names,
                **self.loose}


def _has_text():
    return or_(Message.body.isnot(None), Message.subject.isnot(None),
               Message.history.isnot(None))


def candidates(session, cutoff: dt.datetime, after_id: int = 0, limit: int = 500) -> list:
    """Ended threads, id > after_id, whose end is before cutoff and that still hold text."""
    last_message = (select(func.max(Message.received_at)).where(Message.thread_id == Thread.id)
                    .correlate(Thread).scalar_subquery())
    closed = (select(func.max(Audit.at)).where(Audit.object_type == "thread",
                                                Audit.action == "thread.closed",
                                                Audit.object_id == Thread.public_id)
              .correlate(Thread).scalar_subquery())
    holds_text = (select(Message.id).where(Message.thread_id == Thread.id, _has_text())
                  .correlate(Thread).exists())
    q = (select(Thread).where(Thread.state.in_(ENDED_STATES), Thread.id > after_id,
                              or_(Thread.answered_at.is_(None), Thread.answered_at < cutoff),
                              or_(last_message.is_(None), last_message < cutoff),
                              or_(closed.is_(None), closed < cutoff), holds_text)
         .order_by(Thread.id).limit(limit))
    return list(session.scalars(q))


def purge(services, now: dt.datetime | None = None, dry_run: bool = False,
          batch: int = 500, actor: str = "retention", progress=None) -> PurgeReport:
    """Purge (or, with dry_run, count) what retention allows; one transaction per batch."""
    days = services.cfg.gateway.retention_days
    if days <= 0:
        return PurgeReport(cutoff=None)
    now = now or utcnow()
    report = PurgeReport(cutoff=now - dt.timedelta(days=days))
    after = 0
    while True:
        with services.transaction() as session:
            threads = candidates(session, report.cutoff, after, batch)
            if not threads:
                break
            after = threads[-1].id
            ids = [t.id for t in threads]
            with_text = (select(Message.thread_id, func.count()).where(
                Message.thread_id.in_(ids), _has_text()).group_by(Message.thread_id))
            counts = dict(session.execute(with_text).all())
            mails = dict(session.execute(
                select(Outbox.thread_id, func.count()).where(
                    Outbox.thread_id.in_(ids), Outbox.state.in_(("sent", "failed")),
                    func.length(Outbox.raw) > 0).group_by(Outbox.thread_id)).all())
            names = _named_attachments(ids)
            report.threads += len(threads)
            report.messages += sum(counts.values())
            report.outbox += sum(mails.values())
            report.attachment_names += session.scalar(select(func.count()).where(
                Attachment.id.in_(names))) or 0
            report.thread_ids += [t.public_id for t in threads]
            if not dry_run:
                session.execute(update(Message).where(Message.thread_id.in_(ids))
                                .values(subject=None, body=None, history=None)
                                .execution_options(synchronize_session=False))
                session.execute(update(Attachment).where(Attachment.id.in_(names))
                                .values(filename=None)
                                .execution_options(synchronize_session=False))
                session.execute(update(Outbox).where(
                    Outbox.thread_id.in_(ids), Outbox.state.in_(("sent", "failed")))
                    .values(raw=b"").execution_options(synchronize_session=False))
                for t in threads:
                    audit.record(session, actor, "thread.purged", "thread", t.public_id,
                                 t.patient_id, messages=counts.get(t.id, 0),
                                 outbox_mails=mails.get(t.id, 0), retention_days=days)
        if progress is not None:
            progress(report)
        if len(threads) < batch:
            break
    with services.transaction() as session:
        report.loose = purge_loose(session, report.cutoff, dry_run, actor, days)
    return report


def _named_attachments(thread_ids: list):
    """Attachment rows of these threads' messages that still carry a file name."""
    return (select(Attachment.id).join(Message, Message.id == Attachment.message_id)
            .where(Message.thread_id.in_(thread_ids), Attachment.filename.is_not(None))
            .scalar_subquery())
