"""The audit trail: every state change with its actor.  Ids only, never PHI."""
from __future__ import annotations

import logging

from sqlalchemy import insert
from sqlalchemy.orm import Session

from gateway.models import Audit, utcnow

log = logging.getLogger("gateway.audit")
_AUDIT = Audit.__table__


def record(session: Session, actor: str, action: str, object_type: str,
           object_id=None, patient_id: int | None = None, **detail) -> None:
    """One audit row, written at once in SESSION's transaction (a Core statement: no
    unit-of-work flush)."""
    session.connection().execute(insert(_AUDIT), dict(
        at=utcnow(), actor=actor, action=action, object_type=object_type,
        object_id=None if object_id is None else str(object_id), patient_id=patient_id,
        detail=detail or None))


def refusal(services, source: str, session_id: str, reason: str, reply: str) -> None:
    """An audit row for a refusal decided during the SMTP session (RCPT, DATA limits), in a
    transaction of its own: the reason code and the reply code, never an address.  Best
    effort: a database problem must not change the reply the client gets."""
    try:
        services.write(lambda session: record(session, source, "message.refused", "session",
                                              session_id, None, reason=reason,
                                              reply=reply[:9]), notify=False)
    except Exception as error:
        log.warning("audit of a refusal failed", extra={"session": session_id,
                                                        "error": type(error).__name__})
