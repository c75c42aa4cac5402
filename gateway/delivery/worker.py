"""The outbox worker: claims due rows, delivers them, records the outcome.

Rows are claimed with a lease (``FOR UPDATE SKIP LOCKED`` on PostgreSQL), so several
instances never send one row twice.  A claim names its owner (gateway.delivery.owner) and
the owner's heartbeat renews its leases every third of ``lease_seconds`` while it works.
A gateway that starts releases at once the claims of a dead process of its own machine (its
predecessor, killed); a dead process elsewhere is known only by its lease running out,
within ``lease_seconds``.  The one case where a mail may go out twice: sent, then the
worker died before recording it.  Maildir directories are fsynced once per batch, before
the batch is marked sent.  Temporary failures retry with exponential backoff and jitter until
``max_age_hours``; permanent failures mark the mail failed at once.

Due mail of urgent (emergency) threads is claimed first.  On shutdown the worker drains:
it keeps sending due mail, urgent first, until the drain deadline (``drain``), and stops
early once the gateway says nothing more can arrive and nothing is due (``finish_when_idle``).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass

from sqlalchemy import insert, or_, select, update

from gateway import audit, metrics
from gateway.delivery.dkim_sign import make_signer
from gateway.delivery.errors import PermanentFailure, TemporaryFailure
from gateway.delivery import owner
from gateway.delivery.maildir import MaildirDelivery
from gateway.models import Audit, Outbox, Thread, utcnow
from gateway.outbox import backoff, stamped

log = logging.getLogger("gateway.outbox")
_OUTBOX, _THREADS, _AUDIT = Outbox.__table__, Thread.__table__, Audit.__table__


@dataclass(frozen=True)
class Claimed:
    id: int
    created_epoch: int
    mail_from: str
    recipient: str
    raw: bytes
    patient_id: int | None = None


def make_backend(cfg):
    if cfg.delivery.mode == "relay":
        from gateway.delivery.relay import RelayDelivery
        backend = RelayDelivery(cfg)
    else:
        backend = MaildirDelivery(cfg.maildir_root)
    if cfg.imap.folders:  # recipients "imap:NAME" are appended to IMAP folders
        from gateway.delivery.imap_append import WithImapFolders
        backend = WithImapFolders(backend, cfg)
    return backend


class OutboxWorker:
    def __init__(self, services, batch: int = 50, backend=None):
        self.s = services
        self.batch = batch
        self.backend = backend or make_backend(services.cfg)
        self.signer = make_signer(services.cfg)
        self._wake = asyncio.Event()
        self._stopping = False
        self._drain_until: float | None = None  # loop time: start no send after it
        self._idle_exit = False  # draining and nothing more can arrive: stop when idle
        self._loop: asyncio.AbstractEventLoop | None = None

    def wake(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake.set)

    def claim(self) -> list[Claimed]:
        return self.s.write(self._claim, notify=False)

    def _claim(self, session) -> list[Claimed]:
        """Core statements (no ORM objects): one select of the due rows, one update
        taking them."""
        now = utcnow()
        o = _OUTBOX.c
        q = (select(o.id, o.created_at, o.mail_from, o.recipient, o.raw, o.patient_id)
             .select_from(_OUTBOX.outerjoin(_THREADS, o.thread_id == _THREADS.c.id))
             .where(o.state == "queued", o.next_attempt_at <= now,
                    or_(o.lease_until.is_(None), o.lease_until < now))
             .order_by(_THREADS.c.urgent.is_(True).desc(), o.id).limit(self.batch))
        if session.bind.dialect.name == "postgresql":
            q = q.with_for_update(of=_OUTBOX, skip_locked=True)
        rows = session.execute(q).all()
        if rows:
            session.execute(update(_OUTBOX).where(o.id.in_([r.id for r in rows])).values(
                lease_until=now + dt.timedelta(seconds=self.s.cfg.delivery.lease_seconds),
                claimed_by=owner.me(), attempts=o.attempts + 1))
        return [Claimed(r.id, int(r.created_at.replace(tzinfo=dt.timezone.utc).timestamp()),
                        r.mail_from, r.recipient, r.raw, r.patient_id) for r in rows]

    def finish(self, outcomes: list[tuple[int, Exception | None]],
               released: tuple[int, ...] = (), patients: dict | None = None) -> None:
        """Record OUTCOMES; RELEASED rows (claimed, not tried: the worker is stopping) are
        given back at once, as if never claimed.  PATIENTS maps outbox ids to their
        patient ids (for the audit rows of mail sent)."""
        sent = [i for i, error in outcomes if error is None]

        def record(session) -> None:
            if sent:
                self._record_sent(session, sent, patients)
            for outbox_id, error in outcomes:
                if error is not None:
                    self._record(session, session.get(Outbox, outbox_id), error)
            for outbox_id in released:
                row = session.get(Outbox, outbox_id)
                row.lease_until, row.claimed_by = None, None
                row.attempts = max(0, row.attempts - 1)
        self.s.write(record, notify=False)

    @staticmethod
    def _record_sent(session, sent: list[int], patients: dict | None) -> None:
        """Mail delivered: one update for all of it and one insert of their audit rows."""
        if patients is None:  # not told: read them (one query)
            patients = dict(session.execute(select(_OUTBOX.c.id, _OUTBOX.c.patient_id)
                                            .where(_OUTBOX.c.id.in_(sent))).all())
        now = utcnow()
        session.execute(update(_OUTBOX).where(_OUTBOX.c.id.in_(sent)).values(
            state="sent", sent_at=now, last_error=None, lease_until=None, claimed_by=None))
        session.execute(insert(_AUDIT), [
            dict(at=now, actor="outbox", action="mail.sent", object_type="outbox",
                 object_id=str(i), patient_id=patients.get(i)) for i in sent])
        for _ in sent:
            metrics.delivery_attempt("sent")

    def heartbeat(self) -> int:
        """Renew this process's leases; release the claims of dead processes of this
        machine at once.  Returns how many claims were released."""
        def beat(session) -> int:
            now = utcnow()
            session.execute(update(Outbox).where(
                Outbox.claimed_by == owner.me(), Outbox.state == "queued",
                Outbox.lease_until.is_not(None)).values(
                lease_until=now + dt.timedelta(seconds=self.s.cfg.delivery.lease_seconds)))
            holders = session.scalars(select(Outbox.claimed_by).distinct().where(
                Outbox.claimed_by.is_not(None), Outbox.state == "queued")).all()
            dead = [h for h in holders if owner.is_dead(h)]
            if not dead:
                return 0
            return session.execute(update(Outbox).where(
                Outbox.claimed_by.in_(dead), Outbox.state == "queued").values(
                lease_until=None, claimed_by=None)).rowcount
        released = self.s.write(beat, notify=False)
        if released:
            log.warning("claims of a dead gateway process released",
                        extra={"rows": released})
        return released

    async def _beat(self) -> None:
        every = max(1.0, self.s.cfg.delivery.lease_seconds / 3)
        while True:
            await asyncio.sleep(every)
            try:
                if await asyncio.to_thread(self.heartbeat):
                    self.wake()
            except Exception:
                log.exception("outbox heartbeat failed")

    def _record(self, session, row: Outbox, error: Exception) -> None:
        """A failed attempt: retried later, or failed for good."""
        row.lease_until, row.claimed_by = None, None
        row.last_error = f"{type(error).__name__}: {error}"[:500]
        too_old = utcnow() - row.created_at > dt.timedelta(hours=self.s.cfg.delivery.max_age_hours)
        if isinstance(error, PermanentFailure) or too_old:
            row.state = "failed"
            audit.record(session, "outbox", "mail.failed", "outbox", row.id, row.patient_id)
            metrics.delivery_attempt("permanent" if isinstance(error, PermanentFailure)
                                     else "expired")
        else:
            metrics.delivery_attempt("temporary")
            row.next_attempt_at = utcnow() + backoff(row.attempts,
                                                      self.s.cfg.delivery.retry_base_seconds)
        log.warning("delivery failed", extra={"outbox_id": row.id, "state": row.state,
                                              "attempts": row.attempts})

    async def deliver_batch(self) -> int:
        """Claim and deliver one batch; returns how many rows were tried."""
        rows = await asyncio.to_thread(self.claim)
        outcomes, released = [], []
        for row in rows:
            if self._out_of_time():  # finish the send in progress, give back the rest
                released.append(row.id)
                continue
            try:
                raw = stamped(row.id, row.raw)
                raw = self.signer.sign(raw) if self.signer else raw
                await self.backend.deliver(row.id, row.created_epoch, row.mail_from,
                                           row.recipient, raw)
                outcomes.append((row.id, None))
            except (PermanentFailure, TemporaryFailure) as e:
                outcomes.append((row.id, e))
            except OSError as e:
                outcomes.append((row.id, TemporaryFailure(type(e).__name__)))
        outcomes = await self._flushed(outcomes)
        if outcomes or released:
            await asyncio.to_thread(self.finish, outcomes, tuple(released),
                                    {row.id: row.patient_id for row in rows})
        return len(rows)

    async def _flushed(self, outcomes: list) -> list:
        """Make the batch durable in the backend (one fsync per Maildir folder) before it
        is marked sent; if that fails, nothing of it counts as sent."""
        flush = getattr(self.backend, "flush", None)
        if flush is None or not any(error is None for _, error in outcomes):
            return outcomes
        try:
            await flush()
        except OSError as e:
            failed = TemporaryFailure(type(e).__name__)
            return [(i, failed if error is None else error) for i, error in outcomes]
        return outcomes

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.s.on_commit.append(self.wake)
        try:
            await asyncio.to_thread(self.heartbeat)  # a killed predecessor's claims: now
        except Exception:
            log.exception("outbox heartbeat failed")
        beat = asyncio.create_task(self._beat())
        try:
            while not self._out_of_time():
                try:
                    if await self.deliver_batch():
                        continue
                except Exception:
                    log.exception("outbox worker error")
                if self._idle_exit:
                    break
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), self.s.cfg.delivery.poll_seconds)
                except asyncio.TimeoutError:
                    pass
        finally:
            beat.cancel()
            self.s.on_commit.remove(self.wake)
            await self.backend.close()

    def _out_of_time(self) -> bool:
        if self._stopping:
            return True
        return self._drain_until is not None and self._loop is not None \
            and self._loop.time() >= self._drain_until

    def stop(self) -> None:
        """Stop now: finish the send in progress, give back the rest."""
        self._stopping = True
        self.wake()

    def drain(self, until: float) -> None:
        """Shutdown: keep sending due mail (urgent first) until loop time UNTIL."""
        self._drain_until = until
        self.wake()

    def finish_when_idle(self) -> None:
        """Nothing more can be queued by this process: stop once nothing is due."""
        self._idle_exit = True
        self.wake()
