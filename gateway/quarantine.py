"""Quarantine: a message that makes a pipeline step crash is retried, then set aside.

A crash is any exception from ``pipeline.ingest`` other than a decision (``Reject``) and a
database or disk that is unavailable (those are plain ``451 4.3.0``, not counted: the
message is fine, the gateway is not).  Crashes are counted by the SHA-256 of the raw bytes
in the ``quarantine`` table, in their own transaction.  The sender gets ``451 4.3.0``
until the count reaches ``[smtp] quarantine_after_crashes``; then the raw bytes and the
envelope are stored in that row (state ``held``) and the sender gets ``250``: the message
is durably kept, the sending MTA stops retrying and everything else keeps flowing.
``portal-gateway quarantine list`` shows held messages; ``quarantine retry ID`` runs one
through the pipeline again once the bug is fixed.  Logs carry ids and error types only.

Bounds: only a message whose sender was admitted and authenticated (``Inbound.trusted``)
is counted or held; a stranger's crashing message gets 451 and leaves no trace here.  The
raw bytes held at once never exceed ``[gateway] quarantine_max_bytes`` (a message that
does not fit keeps getting 451, so its sender keeps it), and a held message's raw bytes
are dropped ``quarantine_days`` after it was held (state ``expired``; the row stays).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import logging

from sqlalchemy import func, select, update
from sqlalchemy.exc import DBAPIError

from gateway import audit, pipeline
from gateway.db import DatabaseUnavailable
from gateway.decisions import ACCEPTED, TEMPFAIL, Reject
from gateway.models import Quarantine, utcnow

log = logging.getLogger("gateway.quarantine")

# The database or the disk, not the message: answered 451 and never counted.
UNAVAILABLE = (DBAPIError, DatabaseUnavailable, OSError)


def is_unavailable(error: BaseException) -> bool:
    return isinstance(error, UNAVAILABLE)


def crashed_step(error: BaseException) -> str | None:
    """The pipeline step (function name in gateway.steps or gateway.smtp) that raised."""
    tb, step = error.__traceback__, None
    while tb is not None:
        module = tb.tb_frame.f_globals.get("__name__", "")
        if module.startswith(("gateway.steps.", "gateway.smtp.limits")) and step is None:
            step = tb.tb_frame.f_code.co_name
        tb = tb.tb_next
    return step


def record_crash(services, inbound, error: BaseException) -> str:
    """Count one crash of `inbound`; returns the SMTP reply (451, or 250 once held)."""
    if not getattr(inbound, "trusted", False):
        log.error("message crashed the pipeline before its sender was authenticated",
                  extra={"session": inbound.session_id, "error": type(error).__name__,
                         "step": crashed_step(error)})
        return TEMPFAIL
    sha = hashlib.sha256(inbound.raw).hexdigest()
    limit = services.cfg.smtp.quarantine_after_crashes
    with services.transaction() as session:
        expire(session, services.cfg.gateway.quarantine_days)
        row = session.scalar(select(Quarantine).where(Quarantine.raw_sha256 == sha)
                             .with_for_update())
        if row is None:
            row = Quarantine(raw_sha256=sha, attempts=0, state="retrying", size=len(inbound.raw),
                             source=inbound.source, error_type=type(error).__name__)
            session.add(row)
        if row.state == "held":
            return ACCEPTED  # already set aside: the same bytes again
        if row.state != "retrying":  # released or refused earlier, crashing again
            row.state, row.attempts = "retrying", 0
        row.attempts += 1
        row.error_type = type(error).__name__[:200]
        row.step = crashed_step(error)
        row.session_id, row.last_at = inbound.session_id, utcnow()
        if row.attempts >= limit and _has_room(session, services, len(inbound.raw)):
            _hold(session, row, inbound)
        session.flush()
        qid, state, attempts = row.id, row.state, row.attempts
    log.error("message crashed the pipeline", extra={
        "session": inbound.session_id, "quarantine": qid, "error": row.error_type,
        "step": row.step, "attempt": attempts, "state": state})
    return ACCEPTED if state == "held" else TEMPFAIL


def _has_room(session, services, size: int) -> bool:
    held_bytes = session.scalar(select(func.coalesce(func.sum(Quarantine.size), 0))
                                .where(Quarantine.state == "held")) or 0
    if held_bytes + size <= services.cfg.gateway.quarantine_max_bytes:
        return True
    log.error("quarantine full: message keeps getting 451", extra={"held_bytes": held_bytes})
    return False


def expire(session, days: int, now: dt.datetime | None = None) -> int:
    """Drop the raw bytes of messages held longer than `days`; how many were dropped."""
    cutoff = (now or utcnow()) - dt.timedelta(days=days)
    result = session.execute(update(Quarantine)
                             .where(Quarantine.state == "held", Quarantine.held_at < cutoff)
                             .values(state="expired", raw=None, mail_from=None))
    return result.rowcount or 0


def _hold(session, row: Quarantine, inbound) -> None:
    row.state, row.held_at = "held", utcnow()
    row.raw, row.mail_from = inbound.raw, inbound.mail_from
    row.rcpt_tos, row.envelope_rewritten = list(inbound.rcpt_tos), inbound.envelope_rewritten
    session.flush()
    audit.record(session, inbound.source, "message.quarantined", "quarantine", row.id, None,
                 error=row.error_type, step=row.step, attempts=row.attempts)


def held(session, include_all: bool = False, limit: int = 200) -> list[Quarantine]:
    q = select(Quarantine).order_by(Quarantine.id.desc()).limit(limit)
    if not include_all:
        q = q.where(Quarantine.state == "held")
    return list(session.scalars(q))


def retry(services, qid: int) -> str:
    """Run a held message through the pipeline again: 'released', 'refused' or raises."""
    with services.factory() as session:
        row = session.get(Quarantine, qid)
        if row is None or row.state not in ("held", "expired"):
            raise LookupError(f"no held message with id {qid}")
        if row.raw is None:
            raise LookupError(f"held message {qid} was purged (retention_days or "
                              "quarantine_days)")
        inbound = pipeline.Inbound(raw=row.raw, mail_from=row.mail_from or "",
                                   rcpt_tos=list(row.rcpt_tos or []), source=row.source,
                                   session_id=f"quarantine:{qid}",
                                   envelope_rewritten=row.envelope_rewritten)
    try:
        pipeline.ingest(services, inbound)
        outcome = "released"
    except Reject as decision:
        outcome = "refused" if not decision.reply.startswith("250") else "released"
    with services.transaction() as session:
        row = session.get(Quarantine, qid)
        row.state, row.released_at = outcome, utcnow()
        audit.record(session, "cli", f"quarantine.{outcome}", "quarantine", qid, None)
    return outcome
