"""Steps for mail from a proxy (a parent, guardian or caregiver writing for a patient).

A proxy is one more authenticated sender: its message passed the same sender-auth verdict
as a patient's (steps.authenticate) before `admit_proxy` looks it up.  Only an active
proxy whose patient is not suspended and lives in an allowed state is admitted; a revoked
or only invited proxy gets the uniform refusal, byte-identical to a stranger's.  On
``reply+TOKEN`` the thread must be this proxy's own; on ``portal@`` a proxy of several
patients names the patient with the account number in the subject, else it is refused and
(only when authenticated) told by mail how to write.  Then `decide_scope` decides whether
the message is within the proxy's scope (gateway.proxy_scope); out of scope is never
silent: staff get the message with a banner, the proxy an acknowledgement that the office
will call.
"""
from __future__ import annotations

import re

from gateway import audit, proxies
from gateway.clock import utcnow
from gateway.decisions import REFUSED_SENDER, Reject
from gateway.language import patient_language
from gateway.models import Patient
from gateway.notice_claims import claim_notice
from gateway.proxy_scope import decide
from gateway.steps.classify import subject_of

WHICH_PATIENT = "proxy-which-patient"


def _patient_open(patient: Patient, allowed_states) -> bool:
    """A proxy writes for a patient who is not suspended and lives in an allowed state
    (the patient need not be enrolled: a young child never is)."""
    return (patient is not None and patient.status != "suspended"
            and patient.state.upper() in {s.upper() for s in allowed_states})


def active_proxies(session, address: str, allowed_states) -> list:
    return [p for p in proxies.by_address(session, address) if p.status == "active"
            and _patient_open(session.get(Patient, p.patient_id), allowed_states)]


def _by_subject(session, rows: list, subject: str) -> list:
    """The rows whose patient's account number stands as a word in the subject."""
    chosen = []
    for proxy in rows:
        account = session.get(Patient, proxy.patient_id).account_number
        if re.search(rf"(?<![\w-]){re.escape(account)}(?![\w-])", subject or ""):
            chosen.append(proxy)
    return chosen


def admit_proxy(ctx) -> None:
    """Step (called by admit_patient for a sender who is no patient): admit an active
    proxy for its patient, or refuse with the uniform text."""
    session, cfg = ctx.session, ctx.services.cfg
    rows = active_proxies(session, ctx.sender, cfg.policy.allowed_states)
    if ctx.token_thread is not None:
        rows = [p for p in rows if p.id == ctx.token_thread.proxy_id]
        if not rows:
            raise Reject(REFUSED_SENDER, "token-proxy-mismatch")
    if not rows:
        raise Reject(REFUSED_SENDER, "not-admitted-unknown")
    if len(rows) > 1:
        rows = _by_subject(session, rows, subject_of(ctx.msg))
    if len(rows) != 1:
        followups = ()
        if ctx.auth.result == "pass":
            followups = (which_patient_notice(ctx.services, ctx.sender),)
        raise Reject(REFUSED_SENDER, "proxy-which-patient", followups=followups)
    ctx.proxy = rows[0]
    ctx.patient = session.get(Patient, ctx.proxy.patient_id)


def decide_scope(ctx) -> None:
    """Step: within or outside the proxy's scope (nothing for a patient's own mail)."""
    if ctx.proxy is None:
        return
    confidential = getattr(ctx.scores, "confidential", ()) if ctx.scores else ()
    ctx.scope = decide(ctx.proxy, ctx.patient.birth_date, ctx.classification.category,
                       confidential, utcnow().date())


def audit_proxy_message(ctx) -> None:
    """Step: the audit row of a proxy's message: proxy, patient, scope decision."""
    if ctx.proxy is None:
        return
    audit.record(ctx.session, ctx.inbound.source, "proxy.message", "message", ctx.message.id,
                 ctx.patient.id, proxy=ctx.proxy.id, decision=ctx.scope.word,
                 reasons=list(ctx.scope.reasons), thread=ctx.thread.public_id)


def which_patient_notice(services, address: str):
    """A follow-up f(session): tell a proxy of several patients how to name the patient
    (once a day per address)."""
    def queue(session) -> None:
        from gateway import outbox
        from gateway.steps.acknowledge import practice_context
        if not claim_notice(session, address, WHICH_PATIENT):
            return
        s = services
        rows = proxies.by_address(session, address)
        name = rows[0].display_name if rows else ""
        patient = session.get(Patient, rows[0].patient_id) if rows else None
        msg = s.notices.build(
            "proxy_which_patient", sender=s.addresses.header_address(
                s.cfg.practice.name, s.addresses.portal),
            to=s.addresses.header_address(name, address), domain=s.addresses.domain,
            headers={"Auto-Submitted": "auto-replied"}, patient_name=name,
            lang=patient_language(patient) if patient else "en", **practice_context(s.cfg))
        outbox.enqueue(session, s.addresses, msg, address, "proxy_which_patient")
        audit.record(session, "smtp", "proxy.which_patient", "proxy",
                     rows[0].id if rows else None, None)
    return queue
