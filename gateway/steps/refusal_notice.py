"""The specific reason for a refusal, mailed to the sender's own address (never said at SMTP).

Only for a sender that passed authentication, and at most once per address, reason and day
(the ``notices_sent`` table; a race between instances is settled by its unique key).
"""
from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from gateway import outbox
from gateway.clock import utcnow
from gateway.language import patient_language
from gateway.models import NoticeSent, Patient
from gateway.steps.acknowledge import practice_context

log = logging.getLogger("gateway.refusal")

# reason -> template (every one patient-facing, held to the template allow-list)
TEMPLATES = {"not-enrolled": "refused_not_enrolled", "invited": "refused_invited",
             "suspended": "suspended", "out-of-state": "refused_out_of_state",
             "undeliverable": "refused_undeliverable"}


def refusal_reason(patient, allowed_states) -> str | None:
    """Why a known patient is not admitted; None for a stranger (nothing to tell)."""
    if patient is None:
        return None
    if patient.status == "suspended":
        return "suspended"
    if patient.status in ("roster", "invited"):
        return "invited" if patient.status == "invited" else "not-enrolled"
    if patient.state.upper() not in {s.upper() for s in allowed_states}:
        return "out-of-state"
    if patient.undeliverable:
        return "undeliverable"
    return None


def once_today(session, address: str, reason: str) -> bool:
    """Claims today's (address, reason) mark; False when it was claimed already (by this
    or another instance)."""
    mark = NoticeSent(address=address.lower(), reason=reason,
                      day=utcnow().strftime("%Y-%m-%d"))
    if session.scalar(select(NoticeSent.id).where(
            NoticeSent.address == mark.address, NoticeSent.reason == reason,
            NoticeSent.day == mark.day)):
        return False
    try:
        with session.begin_nested():
            session.add(mark)
    except IntegrityError:
        return False
    return True


def reason_notice(services, patient_id: int, address: str, reason: str):
    """A follow-up f(session) that queues the notice unless one went out today."""
    def queue(session) -> None:
        if not once_today(session, address, reason):
            return
        patient = session.get(Patient, patient_id)
        s = services
        msg = s.notices.build(
            TEMPLATES[reason], sender=s.addresses.header_address(s.cfg.practice.name,
                                                                 s.addresses.portal),
            to=s.addresses.header_address(patient.display_name, address),
            domain=s.addresses.domain, headers={"Auto-Submitted": "auto-replied"},
            patient_name=patient.display_name, lang=patient_language(patient),
            suspend_reason=patient.suspend_reason or "", **practice_context(s.cfg))
        outbox.enqueue(session, s.addresses, msg, address, f"refusal:{reason}"[:32], None,
                       patient_id)
        log.info("refusal notice queued", extra={"patient": patient_id, "reason": reason})
    return queue
