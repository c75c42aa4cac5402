"""RCPT-time decisions: is the recipient one of our addresses with a live token?

RCPT never looks the sender up: every reply before end of DATA is the same for a patient and
a stranger.  Only the null-sender rules are applied here (DSNs go to ``bounces+TOKEN`` and
nowhere else).  Blocking (database) code: the SMTP handler runs it in a worker thread.
"""
from __future__ import annotations

import datetime as dt

from gateway.clock import utcnow
from gateway.decisions import REFUSED_NULL_SENDER, UNKNOWN_RECIPIENT
from gateway.models import Thread, Token

NOT_NULL_SENDER = "550 5.7.1 Only delivery status notifications (null sender) are accepted here"


def is_staff(cfg, address: str) -> bool:
    addr = (address or "").strip().lower()
    domain = addr.rpartition("@")[2]
    return (addr in {a.lower() for a in cfg.staff.addresses}
            or domain in {d.lower().lstrip("@") for d in cfg.staff.domains})


def token_live(session, cfg, purpose: str, token: str) -> bool:
    """Known, of this purpose, not expired; a staff token dies with its closed thread, a
    bounce token after ``[delivery] bounce_token_days``."""
    row = session.get(Token, token)
    if row is None or row.purpose != purpose:
        return False
    now = utcnow()
    if row.expires_at is not None and row.expires_at <= now:
        return False
    if purpose == "bounces":
        age = dt.timedelta(days=cfg.delivery.bounce_token_days)
        return row.outbox_id is not None and row.created_at + age > now
    if purpose == "staff":
        thread = session.get(Thread, row.thread_id) if row.thread_id else None
        return thread is not None and thread.state != "closed"
    return True


LOOK_UP = "look up the token"  # `without_database`: only the database can tell


def without_database(services, mail_from: str, rcpt: str) -> str | None:
    """What `check_recipient` says when no token needs looking up (None: accepted; a
    refusal), else LOOK_UP.  No blocking work: the event loop may call it itself."""
    local = services.addresses.parse(rcpt)
    if local is None:
        return UNKNOWN_RECIPIENT
    if not mail_from and local.purpose != "bounces":
        return REFUSED_NULL_SENDER
    if mail_from and local.purpose == "bounces":
        return NOT_NULL_SENDER
    return None if local.token is None else LOOK_UP


def check_recipient(services, mail_from: str, rcpt: str) -> str | None:
    """None to accept the recipient, else the SMTP reply that refuses it."""
    reply = without_database(services, mail_from, rcpt)
    if reply is not LOOK_UP:
        return reply
    local = services.addresses.parse(rcpt)
    with services.reader() as session:  # a read: never queues behind the writers
        if not token_live(session, services.cfg, local.purpose, local.token):
            return UNKNOWN_RECIPIENT
    return None


def envelope_rewritten(mail_from: str) -> bool:
    """Kept for the IMAP ledger's record only; no decision depends on it any more."""
    local = (mail_from or "").rpartition("@")[0].lower()
    return local.startswith(("srs0=", "srs1=", "prvs=", "btv1=="))
