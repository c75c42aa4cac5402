"""The outbox worker: claims due rows, delivers them, records the outcome.

Rows are claimed with a lease (``FOR UPDATE SKIP LOCKED`` on PostgreSQL), so several
instances never send one row twice and a worker that dies mid-send releases its rows
when the lease runs out.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging

from sqlalchemy import or_, select

from gateway import audit
from gateway.delivery.maildir import MaildirDelivery, PermanentFailure
from gateway.models import Outbox, utcnow
from gateway.outbox import backoff

log = logging.getLogger("gateway.outbox")
LEASE = dt.timedelta(minutes=5)


class OutboxWorker:
    def __init__(self, services, batch: int = 50):
        self.s = services
        self.batch = batch
        self.backend = MaildirDelivery(services.cfg.maildir_root)
        self._wake = asyncio.Event()
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def wake(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    def claim(self) -> list[tuple[int, int, str, bytes]]:
        now = utcnow()
        with self.s.transaction() as session:
            q = (select(Outbox).where(Outbox.state == "queued", Outbox.next_attempt_at <= now,
                                      or_(Outbox.lease_until.is_(None), Outbox.lease_until < now))
                 .order_by(Outbox.id).limit(self.batch))
            if session.bind.dialect.name == "postgresql":
                q = q.with_for_update(skip_locked=True)
            rows = session.scalars(q).all()
            for row in rows:
                row.lease_until = now + LEASE
                row.attempts += 1
            return [(r.id, int(r.created_at.replace(tzinfo=dt.timezone.utc).timestamp()),
                     r.recipient, r.raw) for r in rows]

    def _finish(self, outbox_id: int, error: Exception | None, permanent: bool) -> None:
        with self.s.transaction() as session:
            row = session.get(Outbox, outbox_id)
            row.lease_until = None
            if error is None:
                row.state, row.sent_at, row.last_error = "sent", utcnow(), None
                audit.record(session, "outbox", "mail.sent", "outbox", row.id, row.patient_id)
                return
            row.last_error = f"{type(error).__name__}: {error}"[:500]
            age = utcnow() - row.created_at
            if permanent or age > dt.timedelta(hours=self.s.cfg.delivery.max_age_hours):
                row.state = "failed"
                audit.record(session, "outbox", "mail.failed", "outbox", row.id, row.patient_id)
            else:
                row.next_attempt_at = utcnow() + backoff(row.attempts)

    def deliver_batch(self) -> int:
        """Claim and deliver one batch (blocking); returns how many rows were tried."""
        rows = self.claim()
        for outbox_id, created, recipient, raw in rows:
            try:
                self.backend.deliver(outbox_id, created, recipient, raw)
            except PermanentFailure as e:
                self._finish(outbox_id, e, permanent=True)
            except OSError as e:
                log.warning("delivery failed", extra={"outbox_id": outbox_id})
                self._finish(outbox_id, e, permanent=False)
            else:
                self._finish(outbox_id, None, permanent=False)
        return len(rows)

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.s.on_commit.append(self.wake)
        while not self._stopping:
            try:
                tried = await asyncio.to_thread(self.deliver_batch)
            except Exception:
                log.exception("outbox worker error")
                tried = 0
            if tried:
                continue
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), self.s.cfg.delivery.poll_seconds)
            except asyncio.TimeoutError:
                pass

    def stop(self) -> None:
        self._stopping = True
        self.wake()
