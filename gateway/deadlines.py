"""The deadline sweeper: staff reminders before a thread is due, an escalation to the
supervisor when it is overdue, and (with gateway.enrollment.invites) invite reminders and
expiry.

Exactly once, across restarts, clock jumps and several instances on one PostgreSQL:

* every notice is a ``thread_notices`` row with a unique key (thread, kind, offset, due
  time), written in the same transaction as its outbox rows: a second attempt fails on the
  key and rolls back its mail with it;
* one sweeper works at a time: a PostgreSQL advisory lock (held on its own connection for
  the whole sweep; the others skip their turn); on SQLite a lock in the process;
* a stage's notice is due at ``due_at - offset``.  Each sweep looks only at the threads
  whose notice time fell between its previous sweep (minus ``GRACE``) and now, through the
  ``(state, due_at)`` index, and skips those already noticed: it costs what is due, not
  what exists.  The very first sweep has no lower bound (a one-time catch-up).
* when several stages of one thread are due at once (after an outage, or a clock jump),
  only the latest is sent and the stale ones are recorded as skipped: nobody gets a
  "due in 24 hours" reminder for a thread that is already overdue.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import threading
from dataclasses import dataclass
from typing import Callable

from sqlalchemy import and_, exists, select, text

from gateway import audit, outbox
from gateway.clock import human, rfc5322, utcnow
from gateway.models import Patient, SweepMark, Thread, ThreadNotice

log = logging.getLogger("gateway.deadlines")

GRACE = dt.timedelta(hours=1)  # late commits and clock skew between instances
BATCH = 500
# The sweep's advisory lock key: one per database and schema, so gateways of two practices
# on one server (or two test runs in their own schemas) never wait for each other.
LOCK_KEY = ("hashtextextended(current_database() || '.' || current_schema() "
            "|| '.portal-sweep', 0)")
MARK = "deadlines"
_local_locks: dict[str, threading.Lock] = {}
_local_guard = threading.Lock()


@dataclass(frozen=True)
class Stage:
    kind: str  # reminder | escalation
    offset_minutes: int
    urgent: bool | None = None  # None: every thread; True/False: urgent/routine only

    @property
    def offset(self) -> dt.timedelta:
        return dt.timedelta(minutes=self.offset_minutes)

    def applies(self, thread) -> bool:
        return self.urgent is None or self.urgent == bool(thread.urgent)


def stages(cfg, urgent: bool | None = None) -> list[Stage]:
    """Escalation first, then reminders from the latest (smallest offset) to the earliest.
    Routine threads: the configured offsets (those not shorter than the reply promise would
    fall before the clock starts: ignored).  Urgent threads run on their own clock: one
    reminder at half of `urgent_reply_minutes`.  *urgent* None: the stages of both."""
    limit = cfg.policy.reply_within_hours * 60
    offsets = sorted({round(float(h) * 60) for h in cfg.policy.reminder_offsets_hours
                      if 0 < float(h) * 60 < limit})
    half = max(1, round(cfg.policy.urgent_reply_minutes / 2))
    routine = [Stage("reminder", m, urgent=False) for m in offsets]
    rush = [Stage("reminder", half, urgent=True)]
    chosen = routine + rush if urgent is None else (rush if urgent else routine)
    return [Stage("escalation", 0)] + sorted(chosen, key=lambda st: st.offset_minutes)


def _local_lock(url: str) -> threading.Lock:
    with _local_guard:
        return _local_locks.setdefault(url, threading.Lock())


class DeadlineSweeper:
    def __init__(self, services, clock: Callable[[], dt.datetime] = utcnow,
                 interval: float = 60.0, batch: int = BATCH):
        self.s = services
        self.clock = clock
        self.interval = interval
        self.batch = batch
        self._stop = asyncio.Event()

    # -- locking ---------------------------------------------------------------------
    def sweep_once(self) -> int:
        """One sweep (blocking).  Returns how many notices were queued; 0 also when another
        instance holds the sweep lock."""
        engine = self.s.engine
        if engine.dialect.name != "postgresql":
            lock = _local_lock(str(engine.url))
            if not lock.acquire(blocking=False):
                return 0
            try:
                return self._sweep()
            finally:
                lock.release()
        with engine.connect() as conn:
            got = conn.execute(text(f"select pg_try_advisory_lock({LOCK_KEY})")).scalar()
            conn.commit()
            if not got:
                return 0
            try:
                return self._sweep()
            finally:
                conn.execute(text(f"select pg_advisory_unlock({LOCK_KEY})"))
                conn.commit()

    def _sweep(self) -> int:
        from gateway.enrollment import invites
        now = self.clock()
        with self.s.transaction() as session:
            mark = session.get(SweepMark, MARK)
            lower = None if mark is None else min(mark.swept_until, now) - GRACE
        sent = 0
        for stage in stages(self.s.cfg):
            while True:
                done, queued = self._stage_batch(stage, lower, now)
                sent += queued
                if done < self.batch:
                    break
        sent += invites.sweep(self.s, now, self.batch)
        with self.s.transaction() as session:
            mark = session.get(SweepMark, MARK)
            if mark is None:
                session.add(SweepMark(name=MARK, swept_until=now))
            else:
                mark.swept_until = now
        if sent:
            self.s.committed()
        return sent

    # -- one batch of one stage --------------------------------------------------------
    def _candidates_query(self, stage: Stage, lower, now):
        """Open threads whose STAGE notice time is in (lower, now] and not yet noticed:
        a range on the (state, due_at) index, then a look-up in the notices' unique key."""
        noticed = exists().where(ThreadNotice.thread_id == Thread.id,
                                 ThreadNotice.due_at == Thread.due_at,
                                 ThreadNotice.kind == stage.kind,
                                 ThreadNotice.offset_minutes == stage.offset_minutes)
        window = [Thread.state == "open", Thread.due_at <= now + stage.offset]
        if stage.urgent is not None:
            window.append(Thread.urgent.is_(stage.urgent))
        if lower is not None:
            window.append(Thread.due_at > lower + stage.offset)
        q = (select(Thread).where(and_(*window), ~noticed)
             .order_by(Thread.due_at, Thread.id).limit(self.batch))
        return q

    def _candidates(self, session, stage: Stage, lower, now) -> list[Thread]:
        return list(session.scalars(self._candidates_query(stage, lower, now)))

    def _stage_batch(self, stage: Stage, lower, now) -> tuple[int, int]:
        """(threads handled, notices queued) for one batch."""
        with self.s.transaction() as session:
            threads = self._candidates(session, stage, lower, now)
            if not threads:
                return 0, 0
            seen = _existing(session, [t.id for t in threads])
            queued = 0
            for thread in threads:
                queued += self._notice_thread(session, thread, now, seen)
        return len(threads), queued

    def _notice_thread(self, session, thread: Thread, now, seen: set) -> int:
        """Send the latest due stage of THREAD unless noticed; mark earlier ones skipped."""
        due = [st for st in stages(self.s.cfg, bool(thread.urgent))
               if thread.due_at - st.offset <= now]
        queued = 0
        for i, stage in enumerate(due):  # due[0] is the latest stage that is due
            key = (thread.id, stage.kind, stage.offset_minutes, thread.due_at)
            if key in seen:
                continue
            ids = [] if i else self._send(session, thread, stage, now)
            session.add(ThreadNotice(thread_id=thread.id, kind=stage.kind,
                                     offset_minutes=stage.offset_minutes,
                                     due_at=thread.due_at, skipped=bool(i),
                                     outbox_ids=ids or None))
            seen.add(key)
            queued += len(ids)
        return queued

    def _send(self, session, thread: Thread, stage: Stage, now) -> list[int]:
        s, cfg = self.s, self.s.cfg
        if stage.kind == "escalation":
            teams = [cfg.routing.supervisor]
        else:
            teams = thread.team.split(",") if thread.team else cfg.team_for(
                thread.category or "other")
        if thread.urgent:  # urgent threads keep on-call in the loop, as their copies do
            teams = list(teams) + [cfg.routing.on_call]
        recipients = list(dict.fromkeys(t.strip().lower() for t in teams if t.strip()))
        patient = session.get(Patient, thread.patient_id)
        tz = cfg.practice.timezone
        headers = {"Auto-Submitted": "auto-generated", "X-Portal-Thread": thread.public_id,
                   "X-Portal-Category": thread.category or "other",
                   "X-Portal-Urgent": "yes" if thread.urgent else "no",
                   "X-Portal-Due": rfc5322(thread.due_at, tz),
                   "X-Portal-Notice": _label(stage),
                   "References": f"<thread.{thread.public_id}@{s.addresses.domain}>"}
        if thread.urgent or stage.kind == "escalation":
            headers["Importance"] = "high"
        ids = []
        for rcpt in recipients:
            msg = s.notices.build(
                stage.kind, sender=s.addresses.header_address(cfg.practice.name + " portal",
                                                              s.addresses.portal),
                to=rcpt, domain=s.addresses.domain, headers=headers,
                thread_id=thread.public_id, category=thread.category or "other",
                urgent=bool(thread.urgent), due=human(thread.due_at, tz),
                account_number=patient.account_number if patient else "?",
                team=thread.team or ", ".join(recipients),
                hours_left=round(stage.offset_minutes / 60, 1),
                overdue_hours=round((now - thread.due_at).total_seconds() / 3600, 1))
            row = outbox.enqueue(session, s.addresses, msg, rcpt, stage.kind, thread.id,
                                 thread.patient_id)
            ids.append(row.id)
        audit.record(session, "sweeper", f"thread.{stage.kind}", "thread", thread.public_id,
                     thread.patient_id, stage=_label(stage), outbox=ids)
        log.info("deadline notice queued", extra={"thread_id": thread.public_id,
                                                  "notice": _label(stage), "outbox_ids": ids})
        return ids

    # -- the loop ----------------------------------------------------------------------
    async def run(self) -> None:
        while not self._stop.is_set():
            try:
                await asyncio.to_thread(self.sweep_once)
            except Exception:
                log.exception("deadline sweep failed")
            try:
                await asyncio.wait_for(self._stop.wait(), self.interval)
            except asyncio.TimeoutError:
                pass

    def stop(self) -> None:
        self._stop.set()


def _label(stage: Stage) -> str:
    if stage.kind == "escalation":
        return "escalation"
    minutes = stage.offset_minutes
    return f"reminder-{minutes // 60}h" if minutes % 60 == 0 else f"reminder-{minutes}m"


def _existing(session, thread_ids: list[int]) -> set:
    rows = session.execute(select(ThreadNotice.thread_id, ThreadNotice.kind,
                                  ThreadNotice.offset_minutes, ThreadNotice.due_at)
                           .where(ThreadNotice.thread_id.in_(thread_ids)))
    return {tuple(r) for r in rows}
