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
from gateway.models import Attachment, Message, Patient, Thread
from gateway.smtp.admission import is_staff
from gateway.steps import staff_scope
from gateway.steps.acknowledge import practice_context
from gateway.steps.admit import token_row
from gateway.steps.classify import subject_of
from gateway.steps.thread import open_thread, thread_token

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
    row = token_row(ctx.session, "staff", ctx.local.token)
    thread = ctx.session.get(Thread, row.thread_id) if row and row.thread_id else None
    if thread is None or thread.state == "closed":
        raise Reject(UNKNOWN_RECIPIENT, "unknown-token")
    ctx.thread, ctx.staff_party = thread, row.party
    ctx.patient = ctx.session.get(Patient, thread.patient_id)


def trim_answer(ctx) -> None:
    """Quoted patient text below the answer is trimmed when configured (the content step
    split_text already split it, outside the transaction)."""
    if not ctx.services.cfg.staff.trim_quoted:
        ctx.new_text, ctx.history = ctx.stripped.text, ""


def store_answer(ctx) -> None:
    if ctx.staff_party == "patient" and not ctx.new_text.strip():
        ctx.new_text = staff_scope.held_text(ctx)  # "send my held answer as it is"
    message = Message(thread_id=ctx.thread.id, patient_id=ctx.patient.id, direction="staff",
                      proxy_id=ctx.thread.proxy_id, held=",".join(ctx.held or ())[:32] or None,
                      source=ctx.inbound.source,
                      message_id=(header_text(ctx.msg, "Message-ID") or "")[:998] or None,
                      subject=subject_of(ctx.msg), body=ctx.new_text, history=ctx.history,
                      automatic=ctx.automatic,
                      raw_sha256=hashlib.sha256(ctx.inbound.raw).hexdigest())
    ctx.session.add(message)
    ctx.session.flush()
    actor = f"staff:{hashlib.sha256(ctx.sender.encode()).hexdigest()[:12]}"
    for item in ctx.stripped.removed:
        row = Attachment(message_id=message.id, filename=item.filename,
                         declared_type=item.declared_type,
                         sniffed_type=item.sniffed_type, size=item.size,
                         sha256=item.sha256, reason=item.reason)
        ctx.session.add(row)
        ctx.session.flush()
        audit.record(ctx.session, actor, "attachment.removed", "attachment", row.id,
                     ctx.patient.id, message=message.id, reason=item.reason)
    audit.record(ctx.session, actor, "message.accepted", "message", message.id,
                 ctx.patient.id, thread=ctx.thread.public_id, direction="staff",
                 attachments_removed=len(ctx.stripped.removed))
    ctx.message = message


def _target(ctx):
    """(name, address, thread whose reply token and references the relay carries, or
    None when there is nobody to send to).  An answer sent to the patient's own address
    from a proxy's thread gets a new thread of the patient's own: the patient's reply must
    not land in the proxy's conversation, nor the proxy's mail ids reach the patient."""
    thread, patient = ctx.thread, ctx.patient
    if thread.proxy_id is not None and ctx.staff_party != "patient":
        return ctx.proxy.display_name, ctx.proxy.email, thread
    if not patient.email or patient.undeliverable:
        return None
    if thread.proxy_id is not None:
        own = open_thread(ctx.session, patient.id, None, "answered")
        own.category, own.answered_at = thread.category, utcnow()
        return patient.display_name, patient.email, own
    return patient.display_name, patient.email, thread


def relay_to_patient(ctx) -> None:
    """Relay the answer to whoever the thread is with: its proxy (when check_scope let
    it through), else the patient; a held answer goes nowhere and its writer is told."""
    if ctx.automatic:
        return
    if ctx.held:
        staff_scope.notify_held(ctx)
        return
    target = _target(ctx)
    if target is None:
        return
    name, address, thread = target
    s, patient = ctx.services, ctx.patient
    subject = _OUR_PREFIX.sub("", subject_of(ctx.msg)).strip() or "Your portal message"
    if thread is not ctx.thread:
        subject = "A message from your care team"
    headers = {"Reply-To": s.addresses.make("reply", thread_token(ctx.session, thread,
                                                                   "reply"))}
    if thread.last_message_id:
        headers["In-Reply-To"] = thread.last_message_id
    if thread.ref_chain:
        headers["References"] = thread.ref_chain
    msg = s.notices.build(
        "staff_answer", sender=s.addresses.header_address(s.cfg.practice.name,
                                                          s.addresses.portal),
        to=s.addresses.header_address(name, address),
        domain=s.addresses.domain, headers=headers, subject=subject, answer=ctx.new_text,
        patient_name=name, lang=patient_language(patient, ctx.new_text),
        **practice_context(s.cfg))
    message_id = str(msg["Message-ID"])
    thread.last_message_id = message_id
    thread.ref_chain = " ".join(((thread.ref_chain or "") + " " + message_id).split()[-20:])
    outbox.enqueue(ctx.session, s.addresses, msg, address, "staff_answer",
                   thread.id, patient.id)
    if ctx.thread.proxy_id is not None:
        audit.record(ctx.session, "staff", "answer.relayed", "message", ctx.message.id,
                     patient.id, proxy=ctx.thread.proxy_id,
                     decision="to-patient" if thread is not ctx.thread else "to-proxy")


def mark_answered(ctx) -> None:
    if ctx.automatic or ctx.held:
        return  # a held answer reached nobody: the clock runs on
    ctx.thread.state, ctx.thread.answered_at = "answered", utcnow()
    audit.record(ctx.session, f"staff:{hashlib.sha256(ctx.sender.encode()).hexdigest()[:12]}",
                 "thread.answered", "thread", ctx.thread.public_id, ctx.patient.id,
                 message=ctx.message.id)
