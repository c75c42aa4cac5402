"""The bounce chain: a DSN (RFC 3464) to ``bounces+TOKEN`` marks that outbound mail failed.

Only permanent failures (``Action: failed`` or a 5.x.x status) count; delays are ignored.
Each outbound mail counts at most one bounce, however often its token is replayed; the
token takes only the null sender and dies after ``[delivery] bounce_token_days``
(both checked at RCPT).  Three hard bounces mark the patient's address undeliverable and tell the triage address.
"""
from __future__ import annotations

from gateway import audit, outbox
from gateway.decisions import UNKNOWN_RECIPIENT, Reject
from gateway.models import Outbox, Patient, Token

HARD_BOUNCE_LIMIT = 3
BOUNCED = "bounced (DSN)"


def dsn_is_permanent(msg) -> bool:
    for part in msg.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        payload = part.get_payload()
        blocks = payload if isinstance(payload, list) else []
        text = "\n".join(str(b) for b in blocks) if blocks else str(part.get_payload())
        for line in text.splitlines():
            key, _, value = line.partition(":")
            key, value = key.strip().lower(), value.strip().lower()
            if key == "action" and value == "failed":
                return True
            if key == "status" and value.startswith("5."):
                return True
    return False


def require_content(ctx) -> None:
    """A DSN whose content steps failed: the error is raised (the sender, never trusted,
    gets 451 and nothing is quarantined)."""
    if ctx.content_error is not None:
        raise ctx.content_error


def record_bounce(ctx) -> None:
    token = ctx.session.get(Token, ctx.local.token)
    row = ctx.session.get(Outbox, token.outbox_id) if token and token.outbox_id else None
    if row is None:
        raise Reject(UNKNOWN_RECIPIENT, "unknown-bounce-token")
    ctx.automatic = True
    if not dsn_is_permanent(ctx.msg):
        return
    if row.last_error == BOUNCED:
        return  # one bounce per outbound mail: a replayed DSN counts nothing
    row.state, row.last_error = "failed", BOUNCED
    audit.record(ctx.session, "dsn", "mail.bounced", "outbox", row.id, row.patient_id)
    patient = ctx.session.get(Patient, row.patient_id) if row.patient_id else None
    if patient is None or row.recipient != (patient.email or "").lower():
        return
    patient.hard_bounces += 1
    if patient.hard_bounces >= HARD_BOUNCE_LIMIT and not patient.undeliverable:
        patient.undeliverable = True
        audit.record(ctx.session, "dsn", "patient.undeliverable", "patient",
                     patient.account_number, patient.id)
        _tell_staff(ctx, patient)


def _tell_staff(ctx, patient) -> None:
    s = ctx.services
    msg = s.notices.build(
        "undeliverable_staff", sender=s.addresses.header_address("Portal Gateway",
                                                                 s.addresses.portal),
        to=s.cfg.routing.triage, domain=s.addresses.domain,
        headers={"Auto-Submitted": "auto-generated"},
        account_number=patient.account_number, patient_name=patient.display_name,
        bounces=patient.hard_bounces)
    outbox.enqueue(ctx.session, s.addresses, msg, s.cfg.routing.triage, "undeliverable",
                   None, patient.id)
