"""Decisions a step can take about a message, and the SMTP words for them.

The texts are uniform on purpose: a stranger never learns whether an address belongs to a
patient, or why it was refused.
"""
from __future__ import annotations

REFUSED_SENDER = ("550 5.7.1 This address accepts mail only from enrolled portal patients; "
                  "please call the office")
REFUSED_STAFF = "550 5.7.1 This address accepts mail only from the practice's staff"
REFUSED_NULL_SENDER = "550 5.7.1 Delivery status notifications are not accepted here"
UNKNOWN_RECIPIENT = "550 5.1.1 No such recipient here"
TOO_BIG = "552 5.3.4 Message too big"
BARE_LINE_ENDING = "550 5.5.2 Bare CR or LF line endings are not accepted; use CRLF"
TEMPFAIL = "451 4.3.0 Temporary failure, please try again later"
ACCEPTED = "250 2.0.0 Message accepted"
# Content decisions: about the message's shape or cost, the same for every sender.
MIME_TOO_DEEP = "554 5.6.0 MIME structure nested too deeply"
MIME_TOO_MANY_PARTS = "554 5.6.0 Too many MIME parts"
CONTENT_TOO_COSTLY = ("554 5.6.0 Message too complex to process; please send plain text "
                      "or call the office")


class Reject(Exception):
    """Refuse the message with `reply`; `reason` is a short id for logs and metrics."""

    def __init__(self, reply: str, reason: str, followups: tuple = ()):
        super().__init__(reason)
        self.reply = reply
        self.reason = reason
        # Callables run as f(session) in a new transaction after the refusal's own
        # transaction rolled back: what must be recorded although the mail is refused.
        self.followups = followups
