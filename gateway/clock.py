"""Time: UTC in storage, the practice's zone in words people read."""
from __future__ import annotations

import datetime as dt
import email.utils
from zoneinfo import ZoneInfo


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def local(when: dt.datetime, tz: str) -> dt.datetime:
    return when.replace(tzinfo=dt.timezone.utc).astimezone(ZoneInfo(tz))


def human(when: dt.datetime, tz: str) -> str:
    """'Wednesday, December 2, 2026 at 10:15 AM PST'."""
    t = local(when, tz)
    return f"{t:%A, %B} {t.day}, {t.year} at {t:%I:%M %p %Z}".replace(" at 0", " at ")


def rfc5322(when: dt.datetime, tz: str) -> str:
    return email.utils.format_datetime(local(when, tz))
