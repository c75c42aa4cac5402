"""The specific reason for a refusal, mailed to the sender's own address (never said at SMTP).

Only for a sender that passed authentication, and at most once per address, reason and day
(gateway.notice_claims).
"""
from __future__ import annotations

import logging

from gateway import outbox
from gateway.language import patient_language
from gateway.models import Patient
from gateway.notice_claims import claim_notice
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


def reason_notice(services, patient_id: int, address: str, reason: str):
    """A follow-up f(session) that queues the notice unless one went out today."""
    def queue(session) -> None:
        if not claim_notice(session, address, reason):
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
