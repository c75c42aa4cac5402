"""Steps: read the sender, then admit it (decided here, at end of DATA, never at RCPT).

The header block must name exactly one From mailbox in plain syntax.  Whether that mailbox is
an admissible patient is decided only after sender authentication (steps.authenticate).
Every refusal, whatever its reason, is the one uniform ``550 5.7.1`` text; the specific
reason goes by mail (steps.refusal_notice) and only to a sender that passed authentication.
"""
from __future__ import annotations

from email.headerregistry import HeaderRegistry

from gateway import patients
from gateway.auth.strict import header_block_error, strict_normalize
from gateway.content.mime import header_values
from gateway.clock import utcnow
from gateway.decisions import REFUSED_SENDER, REFUSED_STAFF, UNKNOWN_RECIPIENT, Reject
from gateway.models import Thread, Token
from gateway.steps.authenticate import authenticated, spoof_alert
from gateway.steps.proxy import active_proxies, admit_proxy
from gateway.steps.refusal_notice import refusal_reason, reason_notice

_REGISTRY = HeaderRegistry()


def header_sender(msg) -> str | None:
    """The single From address, or None for anything ambiguous: several mailboxes or
    fields, defects, an ``@`` outside the address (display name, comment, encoded word),
    or an address that is not plain syntax with a strict IDNA domain.  Read once per
    message (the answer is kept with it)."""
    kept = msg.__dict__.get("_portal_sender", _UNREAD)
    if kept is _UNREAD:
        kept = msg.__dict__["_portal_sender"] = _header_sender(msg)
    return kept


_UNREAD = object()


def _header_sender(msg) -> str | None:
    values = header_values(msg, "From")
    if len(values) != 1:
        return None
    try:
        header = values[0]
        if not hasattr(header, "addresses"):  # a message parsed with the lenient policy
            header = _REGISTRY("from", str(header))
        addresses = header.addresses
        if len(addresses) != 1 or getattr(header, "defects", ()):
            return None
        mailbox = addresses[0]
        raw_values = [v for k, v in msg.raw_items() if k.lower() == "from"]
        if len(raw_values) != 1 or str(raw_values[0]).count("@") != 1 or "@" in (mailbox.display_name or ""):
            return None
        return strict_normalize(mailbox.addr_spec)
    except Exception:  # malformed header objects raise on access
        return None


def read_sender(ctx) -> None:
    """Step: the header block and the From mailbox, strictly; else the uniform refusal."""
    refusal = REFUSED_STAFF if ctx.local.purpose == "staff" else REFUSED_SENDER
    problem = header_block_error(ctx.inbound.raw)
    if problem is not None:
        raise Reject(refusal, problem)
    ctx.sender = header_sender(ctx.msg)
    if ctx.sender is None:
        raise Reject(refusal, "header-from-syntax")


def token_row(session, purpose: str, token: str | None) -> Token | None:
    row = session.get(Token, token) if token else None
    if row is None or row.purpose != purpose:
        return None
    if row.expires_at is not None and row.expires_at <= utcnow():
        return None
    return row


def token_thread(session, purpose: str, token: str) -> Thread | None:
    row = token_row(session, purpose, token)
    if row is None or row.thread_id is None:
        return None
    return session.get(Thread, row.thread_id)


def envelope_matches(ctx) -> bool:
    envelope = strict_normalize(ctx.inbound.mail_from)
    return envelope is not None and envelope == ctx.sender


def admit_patient(ctx) -> None:
    """Step: the sender must be authenticated for this address and an admissible patient
    (the reply token's own patient for ``reply+TOKEN``)."""
    cfg = ctx.services.cfg
    patient = patients.by_email(ctx.session, ctx.sender)
    if ctx.local.purpose == "reply":
        ctx.token_thread = token_thread(ctx.session, "reply", ctx.local.token)
        if ctx.token_thread is None:
            raise Reject(UNKNOWN_RECIPIENT, "unknown-token")
    if not authenticated(ctx):
        claimed = patient or _proxy_patient(ctx)
        followups = (spoof_alert(ctx, claimed),) if claimed is not None else ()
        raise Reject(REFUSED_SENDER, f"sender-auth-{ctx.auth.result}", followups=followups)
    if ctx.auth.result != "pass" and not envelope_matches(ctx):
        raise Reject(REFUSED_SENDER, "envelope-from-mismatch")
    if patient is None:  # no patient has this address: perhaps a proxy (steps.proxy)
        admit_proxy(ctx)
        return
    if not patients.is_admissible(patient, cfg.policy.allowed_states):
        reason = refusal_reason(patient, cfg.policy.allowed_states)
        followups = ()
        if reason is not None and ctx.auth.result == "pass":
            followups = (reason_notice(ctx.services, patient.id, ctx.sender, reason),)
        raise Reject(REFUSED_SENDER, f"not-admitted-{reason or 'unknown'}",
                     followups=followups)
    if ctx.token_thread is not None and (ctx.token_thread.patient_id != patient.id
                                         or ctx.token_thread.proxy_id is not None):
        raise Reject(REFUSED_SENDER, "token-patient-mismatch")  # not this party's token
    ctx.patient = patient


def _proxy_patient(ctx):
    """The patient of an active proxy with the sender's address (a forged proxy address
    is reported like a forged patient address), or None."""
    from gateway.models import Patient
    rows = active_proxies(ctx.session, ctx.sender, ctx.services.cfg.policy.allowed_states)
    return ctx.session.get(Patient, rows[0].patient_id) if rows else None
