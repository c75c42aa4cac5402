"""The durable outbox: every mail the gateway sends is a row here, written in the same
transaction as the event that caused it, and delivered later by the worker
(gateway.delivery).  The return path is ``bounces+TOKEN@DOMAIN`` (VERP)."""
from __future__ import annotations

import datetime as dt
import random
from email.message import EmailMessage

from sqlalchemy.orm import Session

from gateway.addresses import Addresses, new_token
from gateway.models import Outbox, Token, utcnow


def enqueue(session: Session, addresses: Addresses, msg: EmailMessage, recipient: str,
            kind: str, thread_id: int | None = None, patient_id: int | None = None) -> Outbox:
    token = new_token()
    row = Outbox(kind=kind, recipient=recipient.lower(),
                 mail_from=addresses.make("bounces", token), raw=b"",
                 thread_id=thread_id, patient_id=patient_id, next_attempt_at=utcnow())
    session.add(row)
    session.flush()
    session.add(Token(token=token, purpose="bounces", outbox_id=row.id))
    msg["X-Portal-Outbox"] = str(row.id)
    row.raw = msg.as_bytes()
    return row


def backoff(attempts: int, base: float = 60.0, cap: float = 3600.0) -> dt.timedelta:
    """Exponential backoff with +-20 % jitter: about 1, 2, 4, ... minutes, at most an hour."""
    seconds = min(cap, base * (2 ** max(0, attempts - 1)))
    return dt.timedelta(seconds=seconds * random.uniform(0.8, 1.2))
