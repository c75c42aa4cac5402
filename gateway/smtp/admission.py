"""RCPT-time decisions: who may write to which of our addresses.

Blocking (database) code: the SMTP handler runs it in a worker thread.
"""
from __future__ import annotations

import re

from gateway import patients
from gateway.decisions import (REFUSED_NULL_SENDER, REFUSED_SENDER, REFUSED_STAFF,
                               UNKNOWN_RECIPIENT)
from gateway.models import Token

# SRS, BATV and bulk-sender bounce addresses: the envelope no longer names the author.
_REWRITTEN = re.compile(r"^(srs[01][=+-]|prvs=|msprvs\d*=|btv1==|bounces?[-+=.]|"
                        r".*[-+=.]bounces?[-+=.]?)", re.I)


def envelope_rewritten(mail_from: str) -> bool:
    local = (mail_from or "").rpartition("@")[0]
    return bool(local) and bool(_REWRITTEN.match(local))


def is_staff(cfg, address: str) -> bool:
    addr = (address or "").strip().lower()
    domain = addr.rpartition("@")[2]
    return (addr in {a.lower() for a in cfg.staff.addresses}
            or domain in {d.lower().lstrip("@") for d in cfg.staff.domains})


def check_recipient(services, mail_from: str, rcpt: str) -> str | None:
    """None to accept the recipient, else the SMTP reply that refuses it."""
    local = services.addresses.parse(rcpt)
    if local is None:
        return UNKNOWN_RECIPIENT
    if not mail_from and local.purpose != "bounces":
        return REFUSED_NULL_SENDER
    with services.factory() as session:
        if local.token is not None:
            token = session.get(Token, local.token)
            if token is None or token.purpose != local.purpose:
                return UNKNOWN_RECIPIENT
        if local.purpose == "bounces":
            return None
        if local.purpose == "staff":
            return None if is_staff(services.cfg, mail_from) else REFUSED_STAFF
        if envelope_rewritten(mail_from):
            return None  # judged by the header From at end of DATA
        patient = patients.by_email(session, mail_from)
        if patients.is_admissible(patient, services.cfg.policy.allowed_states):
            return None
        return REFUSED_SENDER
