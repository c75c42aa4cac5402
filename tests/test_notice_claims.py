"""claim_notice: one capped notice per address, reason and day (or clock hour), also when
two sessions race for the same mark.  SQLite and PostgreSQL."""
from __future__ import annotations

import datetime as dt
import threading

import pytest
from sqlalchemy import func, select

from gateway.models import Audit, NoticeSent
from gateway.notice_claims import claim_notice

NOON = dt.datetime(2026, 3, 4, 12, 30)


def _claim(services, address, reason, **kw) -> bool:
    with services.transaction() as session:
        return claim_notice(session, address, reason, **kw)


def test_once_per_address_reason_and_day(services):
    assert _claim(services, "Ana@Example.com", "not-enrolled", now=NOON)
    assert not _claim(services, "ana@example.com", "not-enrolled", now=NOON)
    assert not _claim(services, "ana@example.com", "not-enrolled",
                      now=NOON + dt.timedelta(hours=11))
    assert _claim(services, "ana@example.com", "suspended", now=NOON)
    assert _claim(services, "bo@example.com", "not-enrolled", now=NOON)
    assert _claim(services, "ana@example.com", "not-enrolled", now=NOON + dt.timedelta(days=1))


def test_per_hour_claims_again_the_next_clock_hour(services):
    assert _claim(services, "security@clinic.test", "spoof:7", per_hour=True, now=NOON)
    assert not _claim(services, "security@clinic.test", "spoof:7", per_hour=True,
                      now=NOON + dt.timedelta(minutes=29))
    assert _claim(services, "security@clinic.test", "spoof:7", per_hour=True,
                  now=NOON + dt.timedelta(minutes=30))
    assert _claim(services, "security@clinic.test", "spoof:8", per_hour=True, now=NOON)
    with services.factory() as session:
        reasons = sorted(session.scalars(select(NoticeSent.reason)))
    assert reasons == ["spoof:7:2026030412", "spoof:7:2026030413", "spoof:8:2026030412"]


def test_a_long_reason_is_cut_to_the_column(services):
    long = "x" * 100
    assert _claim(services, "a@example.com", long, per_hour=True, now=NOON)
    assert not _claim(services, "a@example.com", long, per_hour=True, now=NOON)


# SQLite serialises writers: no two sessions can hold the race open there.
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_two_sessions_racing_get_one_claim_and_keep_their_own_work(services, db_url):
    first = services.factory()
    first.begin()
    assert claim_notice(first, "ana@example.com", "invited", now=NOON)
    result = {}

    def second():
        with services.transaction() as session:
            session.add(Audit(actor="test", action="work.kept", object_type="test"))
            session.flush()
            result["claimed"] = claim_notice(session, "ana@example.com", "invited", now=NOON)

    racer = threading.Thread(target=second)
    racer.start()
    racer.join(1.0)
    assert racer.is_alive()  # waiting on the first session's uncommitted mark
    first.commit()
    first.close()
    racer.join(10)
    assert result == {"claimed": False}
    with services.factory() as session:
        assert session.scalar(select(func.count()).select_from(NoticeSent)) == 1
        assert session.scalar(select(func.count()).select_from(Audit).where(
            Audit.action == "work.kept")) == 1
