"""Step: admit the sender.

The header From must name exactly one mailbox, strictly parsed, belonging to an active
enrolled patient; with a reply token it must be that thread's patient.  Unless the envelope
was rewritten in transit (SRS, BATV, a provider's bounce address), the envelope sender must
be the same patient.  Every refusal uses the one uniform text.
"""
from __future__ import annotations

from email.headerregistry import HeaderRegistry


from gateway import patients
from gateway.addresses import normalize
from gateway.decisions import REFUSED_SENDER, UNKNOWN_RECIPIENT, Reject
from gateway.models import Thread, Token


_REGISTRY = HeaderRegistry()


def header_sender(msg) -> str | None:
    """The single From address, or None for anything ambiguous (several, none, defects)."""
    values = msg.get_all("From") or []
    if len(values) != 1:
        return None
    try:
        header = values[0]
        if not hasattr(header, "addresses"):  # a message parsed with the lenient policy
            header = _REGISTRY("from", str(header))
        addresses = header.addresses
        if len(addresses) != 1 or getattr(header, "defects", ()):
            return None
        addr = addresses[0].addr_spec
    except Exception:  # malformed header objects raise on access
        return None
    return normalize(addr) if addr and "@" in addr else None


def token_thread(session, purpose: str, token: str) -> Thread | None:
    row = session.get(Token, token)
    if row is None or row.purpose != purpose or row.thread_id is None:
        return None
    return session.get(Thread, row.thread_id)


def admit_patient(ctx) -> None:
    cfg = ctx.services.cfg
    sender = header_sender(ctx.msg)
    patient = patients.by_email(ctx.session, sender) if sender else None
    if not patients.is_admissible(patient, cfg.policy.allowed_states):
        raise Reject(REFUSED_SENDER, "header-from-not-patient")
    envelope = normalize(ctx.inbound.mail_from) if ctx.inbound.mail_from else None
    if not ctx.inbound.envelope_rewritten and envelope != sender:
        raise Reject(REFUSED_SENDER, "envelope-from-mismatch")
    if ctx.local.purpose == "reply":
        thread = token_thread(ctx.session, "reply", ctx.local.token)
        if thread is None:
            raise Reject(UNKNOWN_RECIPIENT, "unknown-token")
        if thread.patient_id != patient.id:
            raise Reject(REFUSED_SENDER, "token-patient-mismatch")
        ctx.token_thread = thread
    ctx.sender = sender
    ctx.patient = patient
