"""The inbound pipeline: one entry point (`ingest`) for every door (SMTP, IMAP).

A message passes ordered lists of small steps, read top to bottom.  A step either
changes the context or raises `Reject` (a decision: the sender gets that SMTP reply).

Two phases.  The content steps (parse, strip, split the reply, score against the rules)
are CPU work on the message alone: they run once per message, before any database
transaction opens, under a CPU budget (``[smtp] content_cpu_seconds``; past it the message
is refused with ``554 5.6.0``).  Then the decision-and-store steps for all recipients run
in one database transaction: when `ingest` returns, the message, its attachment log, its
thread and every mail it causes are committed.  An unexpected error in a content step is
held back and raised only once the sender is admitted and authenticated (`trust_sender`),
so a stranger's message can never reach the quarantine.
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field, replace
from email.message import EmailMessage
from typing import Callable

from gateway import audit, metrics
from gateway.addresses import LocalAddress
from gateway.content.budget import Budget, OverBudget
from gateway.decisions import CONTENT_TOO_COSTLY, UNKNOWN_RECIPIENT, Reject
from gateway.steps import (acknowledge, admit, authenticate, bounce, classify, language,
                           loops, parse, prefetch, proxy, route, staff, staff_scope,
                           store, strip, thread)
from gateway.steps.dedupe import begin_ingest, skip_duplicate
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
    envelope_rewritten: bool = False  # kept for the record; it no longer skips any check
    client_ip: str = ""  # the SMTP client's address (SPF); empty over IMAP
    helo: str = ""
    authenticated_user: str = ""  # AUTH login on the submission listener (staff replies)
    # Set once a chain admitted and authenticated the sender: only then may a message
    # that crashes a step be held in the quarantine.
    trusted: bool = False
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
    local: LocalAddress | None
    budget: Budget | None = None
    content_error: BaseException | None = None
    msg: EmailMessage | None = None
    defects: list = field(default_factory=list)
    sender: str | None = None
    patient: object = None
    proxy: object = None  # the proxy writing for `patient` (gateway.models.Proxy), if any
    scope: object = None  # gateway.proxy_scope.ScopeDecision for a proxy's message
    staff_party: str | None = None  # the staff token's party ("patient": not the proxy)
    held: list | None = None  # why a staff answer is not relayed to the thread's proxy
    auth: object = None
    unverified: bool = False  # let in without sender authentication: no ack, no rate
    token_thread: object = None
    automatic: bool = False
    stripped: object = None
    new_text: str = ""
    history: str = ""
    scores: list | None = None
    classification: object = None
    thread: object = None
    message: object = None
    language: object = None  # gateway.language.Choice
    language_guess: object = None  # gateway.language.Guess of new_text (content phase)
    verdict: tuple | None = None  # (sender, Verdict) found before the transaction
    outgoing: list = field(default_factory=list)  # gateway.outbox.Outgoing, queued last


# Content steps: once per message, before the transaction, no database (CPU budget).
CONTENT_STEPS = (
    parse.parse_message,  # MIME depth and part limits: 554 5.6.0
    strip.strip_attachments,
    classify.split_text,  # new text / quoted history
    classify.score_text,  # rule hits, without the thread's context
    language.guess_language,  # the new text's language (the roster's comes later)
)


def trust_sender(ctx) -> None:
    """Step: the sender is admitted and authenticated; a content error held back so far
    is raised now (it may reach the quarantine)."""
    if ctx.unverified or (ctx.auth is not None and ctx.auth.result == "fail"):
        return  # let in without authentication: never trusted
    ctx.inbound.trusted = True
    if ctx.content_error is not None:
        raise ctx.content_error


# The patient chain, read top to bottom (admit sender -> classify -> store -> route).
PATIENT_STEPS = (
    admit.read_sender,  # one plain From mailbox in an unambiguous header block
    skip_duplicate,  # the same bytes again (a lost 250, retried): 250, stored once
    authenticate.authenticate_sender,  # SPF/DKIM/DMARC or trusted A-R; DNS trouble: 451
    admit.admit_patient,  # authenticated enough for this address, and a patient (or
    # an active proxy writing for one)
    trust_sender,
    patient_rate,  # too many messages an hour: 451 4.7.1 and one staff alert
    loops.detect_automatic,
    classify.classify_message,  # the decision, with the thread's context
    proxy.decide_scope,  # a proxy's message: within its scope, or outside (never silent)
    language.choose_language,
    thread.attach_thread,
    store.store_message,
    proxy.audit_proxy_message,
    route.route_to_staff,
    acknowledge.acknowledge_patient,
    acknowledge.send_outgoing,  # the mails of the steps above: one insert
)

# A staff member's answer to staff+TOKEN, relayed to the patient.
STAFF_STEPS = (
    admit.read_sender,
    skip_duplicate,
    authenticate.authenticate_sender,
    staff.admit_staff,
    trust_sender,
    loops.detect_automatic,
    staff.trim_answer,
    staff_scope.check_scope,  # a proxy's thread: within its scope, or held
    staff.store_answer,
    staff.relay_to_patient,
    staff.mark_answered,
)

# Delivery status notifications for one outbound mail (VERP).
BOUNCE_STEPS = (
    bounce.require_content,  # null senders are never trusted: a content error is a 451
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
            services.write(functools.partial(_run_followups, decision.followups))
        _record_refusal(services, inbound, decision)
        raise
    _count_accepted(inbound, contexts)
    return contexts


def _run_followups(followups, session) -> None:
    for followup in followups:
        followup(session)


def _record_refusal(services, inbound: Inbound, decision: Reject) -> None:
    """Metrics and an audit row for a refusal at end of DATA (ids only; best effort: a
    database problem here must not turn the refusal into a 451).  A decision whose reply
    is 2xx (an identical resend, stored once already) is no refusal: counted, not audited."""
    if decision.reply.startswith("2"):
        metrics.message_duplicate(decision.reason, inbound.source)
        return
    metrics.message_refused(decision.reason, inbound.source)
    try:
        services.write(functools.partial(
            audit.record, actor=inbound.source, action="message.refused",
            object_type="session", object_id=inbound.session_id, patient_id=None,
            reason=decision.reason, reply=decision.reply[:9]), notify=False)
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


def content(services, inbound: Inbound) -> Context:
    """Run the content steps (no database) within the CPU budget; raises Reject.  An
    unexpected error is kept in ``content_error`` for `trust_sender`."""
    ctx = Context(services=services, session=None, inbound=inbound, local=None,
                  budget=Budget(services.cfg.smtp.content_cpu_seconds))
    try:
        for step in CONTENT_STEPS:
            step(ctx)
            ctx.budget.check()
    except OverBudget:
        raise Reject(CONTENT_TOO_COSTLY, "content-cpu") from None
    except Reject:
        raise
    except Exception as error:
        ctx.content_error = error
    return ctx


def _ingest(services, inbound: Inbound) -> list[Context]:
    recipients = []
    for rcpt in dict.fromkeys(r.lower() for r in inbound.rcpt_tos):
        local = services.addresses.parse(rcpt)
        if local is None or local.purpose not in CHAINS:
            raise Reject(UNKNOWN_RECIPIENT, "unknown-recipient")
        recipients.append(local)
    analysed = content(services, inbound)
    if any(authenticate.authenticate_sender in CHAINS[local.purpose] for local in recipients):
        prefetch.verdict_before_transaction(analysed)  # DNS waits hold no lock
    return services.write(functools.partial(_decide, analysed, recipients))


def _decide(analysed: Context, recipients: list, session) -> list[Context]:
    """The decision and its rows, in the group commit's transaction.  Runs again from
    scratch when a shared commit failed, so it builds every context anew."""
    begin_ingest(session)  # one session serves many messages in a group commit
    contexts = []
    for local in recipients:
        ctx = replace(analysed, session=session, local=local, budget=None,
                      outgoing=[])
        for step in CHAINS[local.purpose]:
            step(ctx)
        contexts.append(ctx)
    inbound = analysed.inbound
    if inbound.before_commit is not None:
        inbound.before_commit(session, contexts)
    return contexts
