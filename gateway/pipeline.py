"""The inbound pipeline: one entry point (`ingest`) for every door (SMTP, IMAP).

A message passes an ordered list of small steps, read top to bottom.  A step either
changes the context or raises `Reject` (a decision: the sender gets that SMTP reply).
All steps for all recipients run in one database transaction: when `ingest` returns, the
message, its attachment log, its thread and every mail it causes are committed.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Callable

from gateway import audit, metrics
from gateway.addresses import LocalAddress
from gateway.decisions import UNKNOWN_RECIPIENT, Reject
from gateway.steps import (acknowledge, admit, authenticate, bounce, classify, loops,
                           parse, route, staff, store, strip, thread)
from gateway.steps.dedupe import skip_duplicate
from gateway.smtp.limits import patient_rate

log = logging.getLogger("gateway.pipeline")

@dataclass
class Inbound:
    """What a door hands to the pipeline."""
    raw: bytes
    mail_from: str
    rcpt_tos: list[str]
    source: str = "smtp"
    session_id: str = "-"
    envelope_rewritten: bool = False
    # Called as before_commit(session, contexts) after the last step, inside the same
    # transaction: a door records its own bookkeeping atomically with the outcome (IMAP
    # writes its seen-row here).  An exception it raises rolls everything back.
    before_commit: Callable | None = field(default=None, repr=False, compare=False)


@dataclass
class Context:
    """Everything the steps learn about one message for one of our addresses."""
    services: object
    session: object
    inbound: Inbound
    local: LocalAddress
    msg: EmailMessage | None = None
    defects: list = field(default_factory=list)
    sender: str | None = None
    patient: object = None
    auth: object = None
    token_thread: object = None
    automatic: bool = False
    stripped: object = None
    new_text: str = ""
    history: str = ""
    classification: object = None
    thread: object = None
    message: object = None


# The patient chain, read top to bottom (admit sender -> strip -> classify -> store -> route).
PATIENT_STEPS = (
    parse.parse_message,
    skip_duplicate,  # the same bytes again (a lost 250, retried): 250, stored once
    admit.admit_patient,
    authenticate.authenticate_sender,
    patient_rate,  # too many messages an hour: 451 4.7.1 and one staff alert
    loops.detect_automatic,
    strip.strip_attachments,
    classify.classify_message,
    thread.attach_thread,
    store.store_message,
    route.route_to_staff,
    acknowledge.acknowledge_patient,
)

# A staff member's answer to staff+TOKEN, relayed to the patient.
STAFF_STEPS = (
    parse.parse_message,
    skip_duplicate,
    staff.admit_staff,
    loops.detect_automatic,
    strip.strip_attachments,
    staff.trim_answer,
    staff.store_answer,
    staff.relay_to_patient,
    staff.mark_answered,
)

# Delivery status notifications for one outbound mail (VERP).
BOUNCE_STEPS = (
    parse.parse_message,
    bounce.record_bounce,
)

CHAINS = {"portal": PATIENT_STEPS, "reply": PATIENT_STEPS, "staff": STAFF_STEPS,
          "bounces": BOUNCE_STEPS}


def ingest(services, inbound: Inbound) -> list[Context]:
    """Run every recipient's chain in one transaction; raises Reject or lets errors out."""
    try:
        contexts = _ingest(services, inbound)
    except Reject as decision:
        if decision.followups:
            with services.transaction() as session:
                for followup in decision.followups:
                    followup(session)
            services.committed()
        _record_refusal(services, inbound, decision)
        raise
    _count_accepted(inbound, contexts)
    return contexts


def _record_refusal(services, inbound: Inbound, decision: Reject) -> None:
    """Metrics and an audit row for a refusal at end of DATA (ids only; best effort: a
    database problem here must not turn the refusal into a 451).  A decision whose reply
    is 2xx (an identical resend, stored once already) is no refusal: counted, not audited."""
    if decision.reply.startswith("2"):
        metrics.message_duplicate(decision.reason, inbound.source)
        return
    metrics.message_refused(decision.reason, inbound.source)
    try:
        with services.transaction() as session:
            audit.record(session, inbound.source, "message.refused", "session",
                         inbound.session_id, None, reason=decision.reason,
                         reply=decision.reply[:9])
    except Exception as error:
        log.warning("audit of a refusal failed", extra={"session": inbound.session_id,
                                                        "error": type(error).__name__})


def _count_accepted(inbound: Inbound, contexts: list) -> None:
    for ctx in contexts:
        if ctx.message is not None:
            metrics.message_accepted(ctx.message.category, ctx.message.urgent,
                                     ctx.message.direction, inbound.source)
        if ctx.stripped is not None:
            metrics.attachments_removed(ctx.stripped.removed)


def _ingest(services, inbound: Inbound) -> list[Context]:
    contexts = []
    with services.transaction() as session:
        for rcpt in dict.fromkeys(r.lower() for r in inbound.rcpt_tos):
            local = services.addresses.parse(rcpt)
            chain = CHAINS.get(local.purpose) if local else None
            if chain is None:
                raise Reject(UNKNOWN_RECIPIENT, "unknown-recipient")
            ctx = Context(services=services, session=session, inbound=inbound, local=local)
            for step in chain:
                step(ctx)
            contexts.append(ctx)
        if inbound.before_commit is not None:
            inbound.before_commit(session, contexts)
    services.committed()
    return contexts
