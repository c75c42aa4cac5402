"""The durable outbox: every mail the gateway sends is a row here, written in the same
transaction as the event that caused it, and delivered later by the worker
(gateway.delivery).  The return path is ``bounces+TOKEN@DOMAIN`` (VERP)."""
from __future__ import annotations

import datetime as dt
import random
import re
from dataclasses import dataclass
from email.message import EmailMessage

from sqlalchemy import insert
from sqlalchemy.orm import Session

from gateway.addresses import Addresses, new_token
from gateway.models import Outbox, Token, utcnow

_OUTBOX, _TOKENS = Outbox.__table__, Token.__table__


@dataclass
class Outgoing:
    """A mail to queue: the message (or its bytes), whom to, what kind, and why."""
    msg: EmailMessage | bytes
    recipient: str
    kind: str
    thread_id: int | None = None
    patient_id: int | None = None


def enqueue(session: Session, addresses: Addresses, msg: EmailMessage | bytes,
            recipient: str, kind: str, thread_id: int | None = None,
            patient_id: int | None = None) -> Outbox:
    """Queue MSG (a message, or its bytes) for RECIPIENT; returns the row as written
    (detached: read its id)."""
    return enqueue_many(session, addresses,
                        [Outgoing(msg, recipient, kind, thread_id, patient_id)])[0]


def enqueue_many(session: Session, addresses: Addresses,
                 mails: list[Outgoing]) -> list[Outbox]:
    """Queue MAILS in SESSION's transaction; the rows as written, in order (detached)."""
    return [Outbox(id=row_id, **row) for row_id, row in insert_many(session, addresses, mails)]


def insert_many(session: Session, addresses: Addresses,
                mails: list[Outgoing]) -> list[tuple[int, dict]]:
    """Queue MAILS in SESSION's transaction; (id, values) of each row, in order.

    Core statements (no unit-of-work flush per mail): one insert of the rows with their
    raw bytes, one of their bounces tokens.  A row's id (``X-Portal-Outbox``) is added by
    the worker as it delivers (`stamped`), so each mail is serialised once, before its id
    is known."""
    if not mails:
        return []
    if session.new:  # the thread or patient a row points to must be in the database
        session.flush()
    now = utcnow()
    tokens = [new_token() for _ in mails]
    rows = [dict(kind=m.kind, recipient=m.recipient.lower(),
                 mail_from=addresses.make("bounces", token),
                 raw=m.msg if isinstance(m.msg, bytes) else m.msg.as_bytes(),
                 state="queued", attempts=0, thread_id=m.thread_id,
                 patient_id=m.patient_id, next_attempt_at=now, created_at=now)
            for m, token in zip(mails, tokens)]
    conn = session.connection()
    if len(rows) == 1:
        ids = [conn.execute(insert(_OUTBOX).returning(_OUTBOX.c.id), rows[0]).scalar_one()]
    else:
        ids = conn.execute(insert(_OUTBOX).returning(
            _OUTBOX.c.id, sort_by_parameter_order=True), rows).scalars().all()
    conn.execute(insert(_TOKENS), [dict(token=token, purpose="bounces", outbox_id=row_id,
                                         created_at=now)
                                    for token, row_id in zip(tokens, ids)])
    return list(zip(ids, rows))


_STAMP = re.compile(rb"(?im)^X-Portal-Outbox:")


def stamped(outbox_id: int, raw: bytes) -> bytes:
    """RAW as delivered: with ``X-Portal-Outbox: ID`` as its first header (a mail queued
    before the worker added it carries it already and is left as it is)."""
    ends = [at for at in (raw.find(b"\n\n"), raw.find(b"\r\n\r\n")) if at >= 0]
    if _STAMP.search(raw, 0, min(ends, default=len(raw))):
        return raw
    eol = b"\r\n" if raw[:raw.find(b"\n") + 1].endswith(b"\r\n") else b"\n"
    return b"X-Portal-Outbox: %d" % outbox_id + eol + raw


def backoff(attempts: int, base: float = 60.0, cap: float = 3600.0) -> dt.timedelta:
    """Exponential backoff with +-20 % jitter: about 1, 2, 4, ... minutes, at most an hour."""
    seconds = min(cap, base * (2 ** max(0, attempts - 1)))
    return dt.timedelta(seconds=seconds * random.uniform(0.8, 1.2))
