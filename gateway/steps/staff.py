"""The staff chain: a staff member's answer to ``staff+TOKEN`` is relayed to the
patient from the portal address, threaded (In-Reply-To/References), with the patient's
quoted text trimmed when configured; the thread is marked answered (its clock stops).
Attachments in staff mail are removed and logged like patients' attachments."""
from __future__ import annotations

import hashlib
import re

from gateway.content.mime import header_text
from gateway import audit, outbox
from gateway.auth.strict import strict_normalize
from gateway.clock import utcnow
from gateway.decisions import REFUSED_STAFF, UNKNOWN_RECIPIENT, Reject
from gateway.language import patient_language
from gateway.models import Patient
from gateway.smtp.admission import is_staff
from gateway.steps.acknowledge import practice_context
from gateway.steps.admit import token_thread
from gateway.steps.classify import subject_of
from gateway.steps.store import insert_message
from gateway.steps.thread import thread_token

_OUR_PREFIX = re.compile(r"\[(?:URGENT )?Portal:[^\]]*\]\s*", re.I)


def admit_staff(ctx) -> None:
    """The From must be a configured staff address or domain, authenticated (an aligned
    pass, or AUTH on the submission listener; with auth off, the envelope too), and the
    token's thread must still be open."""
    cfg = ctx.services.cfg
    if not is_staff(cfg, ctx.sender):
        raise Reject(REFUSED_STAFF, "header-from-not-staff")
    if cfg.policy.auth_mode == "off" and not ctx.inbound.authenticated_user:
        envelope = strict_normalize(ctx.inbound.mail_from)
        if not (envelope and is_staff(cfg, envelope)):
            raise Reject(REFUSED_STAFF, "envelope-from-not-staff")
    elif ctx.auth.result != "pass":
        raise Reject(REFUSED_STAFF, f"staff-auth-{ctx.auth.result}")
    thread = token_thread(ctx.session, "staff", ctx.local.token)
    if thread is None or thread.state == "closed":
        raise Reject(UNKNOWN_RECIPIENT, "unknown-token")
    ctx.thread = thread
    ctx.patient = ctx.session.get(Patient, thread.patient_id)


def trim_answer(ctx) -> None:
    """Quoted patient text below the answer is trimmed when configured (the content step
    split_text already split it, outside the transaction)."""
    if not ctx.services.cfg.staff.trim_quoted:
        ctx.new_text, ctx.history = ctx.stripped.text, ""


def store_answer(ctx) -> None:
    values = dict(thread_id=ctx.thread.id, patient_id=ctx.patient.id, direction="staff",
                  source=ctx.inbound.source,
                  message_id=(header_text(ctx.msg, "Message-ID") or "")[:998] or None,
                  subject=subject_of(ctx.msg), body=ctx.new_text, history=ctx.history,
                  automatic=ctx.automatic, category=None, urgent=False, rules=None,
                  sender_auth=None, received_at=utcnow(),
                  raw_sha256=hashlib.sha256(ctx.inbound.raw).hexdigest())
    actor = f"staff:{hashlib.sha256(ctx.sender.encode()).hexdigest()[:12]}"
    message = insert_message(ctx.session, values, ctx.stripped.removed, actor)
    audit.record(ctx.session, actor, "message.accepted", "message", message.id,
                 ctx.patient.id, thread=ctx.thread.public_id, direction="staff",
                 attachments_removed=len(ctx.stripped.removed))
    ctx.message = message


def relay_to_patient(ctx) -> None:
    if ctx.automatic or not ctx.patient.email or ctx.patient.undeliverable:
        return
    s, thread, patient = ctx.services, ctx.thread, ctx.patient
    subject = _OUR_PREFIX.sub("", subject_of(ctx.msg)).strip() or "Your portal message"
    headers = {"Reply-To": s.addresses.make("reply", thread_token(ctx.session, thread,
                                                                   "reply"))}
    if thread.last_message_id:
        headers["In-Reply-To"] = thread.last_message_id
    if thread.ref_chain:
        headers["References"] = thread.ref_chain
    msg = s.notices.build(
        "staff_answer", sender=s.addresses.header_address(s.cfg.practice.name,
                                                          s.addresses.portal),
        to=s.addresses.header_address(patient.display_name, patient.email),
        domain=s.addresses.domain, headers=headers, subject=subject, answer=ctx.new_text,
        patient_name=patient.display_name, lang=patient_language(patient, ctx.new_text),
        **practice_context(s.cfg))
    message_id = str(msg["Message-ID"])
    thread.last_message_id = message_id
    thread.ref_chain = " ".join(((thread.ref_chain or "") + " " + message_id).split()[-20:])
    outbox.enqueue(ctx.session, s.addresses, msg, patient.email, "staff_answer",
                   thread.id, patient.id)


def mark_answered(ctx) -> None:
    if ctx.automatic:
        return
    ctx.thread.state, ctx.thread.answered_at = "answered", utcnow()
    audit.record(ctx.session, f"staff:{hashlib.sha256(ctx.sender.encode()).hexdigest()[:12]}",
                 "thread.answered", "thread", ctx.thread.public_id, ctx.patient.id,
                 message=ctx.message.id)
