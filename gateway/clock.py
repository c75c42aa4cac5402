"""Time: UTC in storage, the practice's zone in words people read."""
from __future__ import annotations

import datetime as dt
import email.utils
from zoneinfo import ZoneInfo


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def local(when: dt.datetime, tz: str) -> dt.datetime:
    return when.replace(tzinfo=dt.timezone.utc).astimezone(ZoneInfo(tz))


def human(when: dt.datetime, tz: str, lang: str = "en") -> str:
    """'Wednesday, December 2, 2026 at 10:15 AM PST', or in the patient's language with
    Babel: 'miércoles, 2 de diciembre de 2026, 10:15 a. m. PST'."""
    t = local(when, tz)
    if lang == "en":
        return f"{t:%A, %B} {t.day}, {t.year} at {t:%I:%M %p %Z}".replace(" at 0", " at ")
    from babel.dates import format_date, format_time
    return (f"{format_date(t, 'full', locale=lang)}, "
            f"{format_time(t, 'h:mm a', locale=lang)} {t:%Z}")


def rfc5322(when: dt.datetime, tz: str) -> str:
    return email.utils.format_datetime(local(when, tz))
