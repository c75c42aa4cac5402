"""One notice per address, reason and day (or clock hour): the ``notices_sent`` marks.

Every capped notice (a refusal's reason, the proxy which-patient help, the spoofing alert
to the security address, the abuse alert to triage) first claims its mark here.  A claim
is a row in ``notices_sent``; its unique key (address, reason, day) settles a race between
sessions or instances: only one of them gets True.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from gateway.clock import utcnow
from gateway.models import NoticeSent

MAX_REASON = 64  # notices_sent.reason


def claim_notice(session, address: str, reason: str, per_hour: bool = False,
                 now: dt.datetime | None = None) -> bool:
    """Claim today's (address, reason) mark, or this clock hour's with `per_hour`; False
    when it was claimed already (by this or another session).  Only the mark is rolled
    back when another session won the race, never the caller's work."""
    now = now or utcnow()
    if per_hour:
        reason = f"{reason}:{now:%Y%m%d%H}"
    mark = NoticeSent(address=address.lower(), reason=reason[:MAX_REASON],
                      day=now.strftime("%Y-%m-%d"))
    if session.scalar(select(NoticeSent.id).where(NoticeSent.address == mark.address,
                                                  NoticeSent.reason == mark.reason,
                                                  NoticeSent.day == mark.day)):
        return False
    try:
        with session.begin_nested():
            session.add(mark)
    except IntegrityError:
        return False
    return True
