"""The audit trail: every state change with its actor.  Ids only, never PHI."""
from __future__ import annotations

from sqlalchemy.orm import Session

from gateway.models import Audit


def record(session: Session, actor: str, action: str, object_type: str,
           object_id=None, patient_id: int | None = None, **detail) -> None:
    session.add(Audit(actor=actor, action=action, object_type=object_type,
                      object_id=None if object_id is None else str(object_id),
                      patient_id=patient_id, detail=detail or None))
