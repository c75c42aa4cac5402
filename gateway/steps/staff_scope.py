"""Staff answers on a proxy's thread: relay within the proxy's scope, hold the rest.

A staff member's answer through ``staff+TOKEN`` goes to whoever the thread is with.  On a
proxy's thread it is held (stored, not relayed) when the proxy is no longer active, when
the thread was marked outside the proxy's scope (its message was), when the thread's
category is outside the scope, or when the answer's own text is confidential for a patient
aged 12-17 (or of unknown age): the staff member who wrote in a hurry is not trusted to
have noticed.  The staff member then gets a notice saying why, whose Reply-To is a staff
token with party "patient": an answer sent there goes to the patient's own address (the
held answer itself when the reply adds no text of its own), never to the proxy.
"""
from __future__ import annotations

from sqlalchemy import select

from gateway import audit, outbox
from gateway.addresses import new_token
from gateway.clock import utcnow
from gateway.models import Message, Proxy, Token
from gateway.proxy_scope import decide
from gateway.steps.classify import subject_of

REASON_WORDS = {
    "proxy-inactive": "the proxy this conversation is with is no longer active",
    "thread-outside-scope": "the proxy's message was outside the proxy's scope",
}


def _reason_words(reason: str) -> str:
    kind, _, what = reason.partition(":")
    if kind == "category":
        return f"the category {what} is outside this proxy's scope"
    if kind == "confidential":
        return f"the answer mentions confidential care ({what}) of a patient aged 12-17"
    return REASON_WORDS.get(reason, reason)


def check_scope(ctx) -> None:
    """Step: on a proxy's thread, decide whether the answer may go to the proxy."""
    thread = ctx.thread
    ctx.held = None
    if thread.proxy_id is None or ctx.staff_party == "patient":
        return
    proxy = ctx.session.get(Proxy, thread.proxy_id)
    ctx.proxy = proxy
    reasons = []
    if proxy.status != "active":
        reasons.append("proxy-inactive")
    if thread.outside_scope:
        reasons.append("thread-outside-scope")
    topics = ctx.services.classifier.confidential(ctx.new_text, subject_of(ctx.msg))
    decision = decide(proxy, ctx.patient.birth_date, thread.category, topics,
                      utcnow().date())
    reasons.extend(decision.reasons)
    if reasons:
        ctx.held = list(dict.fromkeys(reasons))


def held_text(ctx) -> str:
    """For an answer to the patient's own address that adds nothing: the latest held
    answer on the thread."""
    return ctx.session.scalar(
        select(Message.body).where(Message.thread_id == ctx.thread.id,
                                   Message.held.is_not(None))
        .order_by(Message.id.desc()).limit(1)) or ""


def notify_held(ctx) -> None:
    """Queue the notice to the staff member whose answer was held, with the Reply-To
    that sends an answer to the patient's own address."""
    s, thread, patient = ctx.services, ctx.thread, ctx.patient
    token = new_token()
    ctx.session.add(Token(token=token, purpose="staff", thread_id=thread.id,
                          patient_id=patient.id, party="patient"))
    reasons = "; ".join(_reason_words(r) for r in ctx.held)
    msg = s.notices.build(
        "held_answer", sender=s.addresses.header_address("Portal Gateway",
                                                         s.addresses.portal),
        to=ctx.sender, domain=s.addresses.domain,
        headers={"Reply-To": s.addresses.make("staff", token),
                 "Auto-Submitted": "auto-replied", "X-Portal-Thread": thread.public_id},
        patient_name=patient.display_name, account_number=patient.account_number,
        held_reason=reasons, answer=ctx.new_text, subject=subject_of(ctx.msg) or "",
        patient_address="yes" if patient.email and not patient.undeliverable else "")
    outbox.enqueue(ctx.session, s.addresses, msg, ctx.sender, "held_answer", thread.id,
                   patient.id)
    audit.record(ctx.session, "staff", "answer.held", "message", ctx.message.id, patient.id,
                 proxy=thread.proxy_id, decision="held", reasons=ctx.held)
