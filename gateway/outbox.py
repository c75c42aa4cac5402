"""The durable outbox: every mail the gateway sends is a row here, written in the same
transaction as the event that caused it, and delivered later by the worker
(gateway.delivery).  The return path is ``bounces+TOKEN@DOMAIN`` (VERP)."""
from __future__ import annotations

import datetime as dt
import random
from email.message import EmailMessage

from sqlalchemy import insert, update
from sqlalchemy.orm import Session

from gateway.addresses import Addresses, new_token
from gateway.models import Outbox, Token, utcnow

_OUTBOX, _TOKENS = Outbox.__table__, Token.__table__


def enqueue(session: Session, addresses: Addresses, msg: EmailMessage, recipient: str,
            kind: str, thread_id: int | None = None, patient_id: int | None = None) -> Outbox:
    """Queue MSG for RECIPIENT; returns the row as written (detached: read its id).

    Written with Core statements (no unit-of-work flush per mail): the row, then its raw
    bytes once the id (named in ``X-Portal-Outbox``) is known, then its bounces token."""
    if session.new:  # the thread or patient the row points to must be in the database
        session.flush()
    token, now = new_token(), utcnow()
    values = dict(kind=kind, recipient=recipient.lower(),
                  mail_from=addresses.make("bounces", token), raw=b"", state="queued",
                  attempts=0, thread_id=thread_id, patient_id=patient_id,
                  next_attempt_at=now, created_at=now)
    conn = session.connection()
    row_id = conn.execute(insert(_OUTBOX).returning(_OUTBOX.c.id), values).scalar_one()
    msg["X-Portal-Outbox"] = str(row_id)
    values.update(id=row_id, raw=msg.as_bytes())
    conn.execute(update(_OUTBOX).where(_OUTBOX.c.id == row_id).values(raw=values["raw"]))
    conn.execute(insert(_TOKENS), dict(token=token, purpose="bounces", outbox_id=row_id,
                                       created_at=now))
    return Outbox(**values)


def backoff(attempts: int, base: float = 60.0, cap: float = 3600.0) -> dt.timedelta:
    """Exponential backoff with +-20 % jitter: about 1, 2, 4, ... minutes, at most an hour."""
    seconds = min(cap, base * (2 ** max(0, attempts - 1)))
    return dt.timedelta(seconds=seconds * random.uniform(0.8, 1.2))
