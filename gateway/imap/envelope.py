"""The envelope of a pulled message, rebuilt from the headers the delivering server added.

SMTP hands the gateway an envelope; IMAP does not.  The recipients are those of our own
addresses named in Delivered-To, else in X-Original-To, else in To/Cc (the first header kind
that names one wins), else the account's `rcpt`.  The sender is the top Return-Path
(``<>`` is the null sender); a message without one (put in the mailbox by hand) falls back
to its header From, which the admit step checks again anyway.
"""
from __future__ import annotations

import email.parser
import email.policy
from dataclasses import dataclass
from email.utils import getaddresses, parseaddr

from gateway.smtp.admission import envelope_rewritten

RECIPIENT_HEADERS = (("Delivered-To",), ("X-Original-To",), ("To", "Cc"))


@dataclass
class Envelope:
    mail_from: str
    rcpt_tos: list[str]
    rewritten: bool
    message_id: str | None


def _headers(raw: bytes):
    return email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw)


def _addresses(headers, names) -> list[str]:
    values = [str(v) for name in names for v in headers.get_all(name, [])]
    return [addr.strip() for _, addr in getaddresses(values) if addr and "@" in addr]


def recipients(addresses, headers, fallback: str) -> list[str]:
    for names in RECIPIENT_HEADERS:
        ours = [a.lower() for a in _addresses(headers, names) if addresses.parse(a)]
        if ours:
            return list(dict.fromkeys(ours))
    return [fallback]


def sender(headers) -> str:
    value = headers.get("Return-Path")
    if value is None:
        return parseaddr(str(headers.get("From", "")))[1]
    value = str(value).strip()
    if value in ("<>", ""):
        return ""
    return parseaddr(value)[1]


def derive(addresses, raw: bytes, fallback_rcpt: str) -> Envelope:
    headers = _headers(raw)
    mail_from = sender(headers)
    message_id = str(headers.get("Message-ID", "") or "").strip()[:998] or None
    return Envelope(mail_from=mail_from, rcpt_tos=recipients(addresses, headers, fallback_rcpt),
                    rewritten=envelope_rewritten(mail_from), message_id=message_id)
