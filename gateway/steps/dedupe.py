"""Step: the very same message again is answered 250 and not stored twice.

A ``250`` can be lost on the wire (the connection drops, the gateway is killed right after
the commit); the sending MTA then retries the identical bytes.  A stored message with the
same SHA-256 of the raw bytes (and the same Message-ID, when it has one) received within
``[smtp] duplicate_window_hours`` makes the whole message a duplicate: ``Reject`` with the
ordinary ``250`` reply, so nothing is stored, routed or acknowledged again.  The record is
the ``messages`` row itself (raw_sha256, message_id), written in the same transaction as
everything else.  It runs once per ingest, before any recipient's chain stores anything;
on PostgreSQL a transaction-scoped advisory lock on the hash serialises two identical
messages arriving at once (SQLite's BEGIN IMMEDIATE already does).
"""
from __future__ import annotations

import datetime as dt
import hashlib

from sqlalchemy import bindparam, func, select

from gateway.content.mime import header_text
from gateway.decisions import ACCEPTED, Reject
from gateway.models import Message, utcnow

_DONE = "dedupe_checked"


def begin_ingest(session) -> None:
    """A new message starts in SESSION (a group commit writes several in one session)."""
    session.info.pop(_DONE, None)


def skip_duplicate(ctx) -> None:
    session = ctx.session
    if session.info.get(_DONE):
        return  # one check per ingest: a second recipient must not see the first's row
    session.info[_DONE] = True
    hours = ctx.services.cfg.smtp.duplicate_window_hours
    if hours <= 0:
        return
    digest = hashlib.sha256(ctx.inbound.raw).digest()
    if session.get_bind().dialect.name == "postgresql":
        key = int.from_bytes(digest[:8], "big", signed=True)
        session.execute(select(func.pg_advisory_xact_lock(key)))
    message_id = (header_text(ctx.msg, "Message-ID") or "")[:998] if ctx.msg else ""
    params = dict(sha=digest.hex(), since=utcnow() - dt.timedelta(hours=hours))
    if message_id:
        params["mid"] = message_id
    # Core, on the session's connection: nothing of this message is pending a flush yet
    # (this is its first statement), and earlier jobs of a group commit were flushed.
    found = session.connection().execute(_SAME_WITH_ID if message_id else _SAME, params)
    if found.first() is not None:
        raise Reject(ACCEPTED, "duplicate")


_MESSAGES = Message.__table__
# Built once (a statement built per message costs more than running it).
_SAME = (select(_MESSAGES.c.id)
         .where(_MESSAGES.c.raw_sha256 == bindparam("sha"),
                _MESSAGES.c.received_at >= bindparam("since")).limit(1))
_SAME_WITH_ID = _SAME.where(_MESSAGES.c.message_id == bindparam("mid"))
