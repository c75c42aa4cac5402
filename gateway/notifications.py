"""Portal notifications: transactional mail from the portal application to patients.

Each notification opens a thread that remembers its kind and waits for the patient's reply
(``Reply-To: reply+TOKEN``), so a reply lands in the right thread and leans to the right
category.  Only the kinds listed in config are sent (guideline point 8: no marketing).
"""
from __future__ import annotations

import copy
import email.utils
from email.message import EmailMessage

from gateway import audit, outbox
from gateway.language import patient_language
from gateway.notices import one_line
from gateway.steps.acknowledge import practice_context
from gateway.steps.thread import open_thread, thread_token

NOT_TRANSACTIONAL = ("550 5.7.1 Only transactional portal notifications are sent through "
                     "this gateway; no marketing or bulk mail")
REMOVED_HEADERS = ("X-Portal-Kind", "Reply-To", "Auto-Submitted", "Message-ID", "Bcc",
                   "Return-Path", "X-Portal-Outbox",
                   # each copy goes to one patient and names only that patient
                   "To", "Cc", "Resent-To", "Resent-Cc", "Resent-Bcc", "Delivered-To")


def kind_of(msg) -> str:
    return one_line(str(msg.get("X-Portal-Kind", "") or "")).strip().lower()


def is_transactional(cfg, kind: str) -> bool:
    return bool(kind) and kind in {k.lower() for k in cfg.notifications.kinds}


def prepare(services, session, patient, msg: EmailMessage, kind: str, actor: str) -> int:
    """Rewrite `msg` for `patient` and queue it, in the caller's transaction; a copy goes
    to each of the patient's proxies whose scope takes the kind (gateway.proxy_notify)."""
    from gateway.proxy_notify import copies_for_proxies
    original = copy.deepcopy(msg)
    row_id = _queue_one(services, session, patient, None, msg, kind, actor)
    for proxy in copies_for_proxies(services.cfg, session, patient, kind):
        _queue_one(services, session, patient, proxy, copy.deepcopy(original), kind, actor)
    return row_id


def _queue_one(services, session, patient, proxy, msg: EmailMessage, kind: str,
               actor: str) -> int:
    """One recipient's copy, in a thread of its own (its reply token names that party);
    the To names only that recipient."""
    s = services
    name, address = ((proxy.display_name, proxy.email) if proxy is not None
                     else (patient.display_name, patient.email))
    thread = open_thread(session, patient.id, kind, "waiting",
                         proxy.id if proxy is not None else None)
    for header in REMOVED_HEADERS:
        del msg[header]
    msg["To"] = s.addresses.header_address(name, address)
    msg["Reply-To"] = s.addresses.make("reply", thread_token(session, thread, "reply"))
    msg["Auto-Submitted"] = "auto-generated"
    msg["Message-ID"] = email.utils.make_msgid(domain=s.addresses.domain)
    if msg["Date"] is None:
        msg["Date"] = email.utils.formatdate(localtime=False)
    thread.last_message_id = str(msg["Message-ID"])
    thread.ref_chain = thread.last_message_id
    row = outbox.enqueue(session, s.addresses, msg, address, f"notify:{kind}",
                         thread.id, patient.id)
    detail = {"proxy": proxy.id, "decision": "within"} if proxy is not None else {}
    audit.record(session, actor, "notification.queued", "outbox", row.id, patient.id,
                 kind=kind, thread=thread.public_id, **detail)
    return row.id


def from_template(services, patient, kind: str) -> EmailMessage:
    """The notification mail for KIND from templates/mail/notify_KIND.txt, or the generic
    templates/mail/notification.txt."""
    s = services
    name = f"notify_{kind}" if (s.cfg.templates_dir / "mail" / f"notify_{kind}.txt").exists() \
        else "notification"
    return s.notices.build(
        name, sender=s.addresses.header_address(s.cfg.practice.name, s.addresses.portal),
        to=s.addresses.header_address(patient.display_name, patient.email),
        domain=s.addresses.domain, patient_name=patient.display_name,
        lang=patient_language(patient), **practice_context(s.cfg))
