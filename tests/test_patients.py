"""Roster import and patient status changes, on SQLite and PostgreSQL."""
from __future__ import annotations

from sqlalchemy import select

from gateway import patients
from gateway.models import Audit, Patient

ROSTER = """account_number,first_name,last_name,email,state
1001,Ana,Lopez,Ana.Lopez@Example.com,CA
1002,Bea,Kim,bea@example.com,ca
1003,Cy,Ng,not-an-address,CA
1004,,Ng,dee@example.com,CA
1005,Eve,Moss,eve@example.com,Nevada
1006,Fay,Ortiz,,CA
1001,Ana,Again,ana2@example.com,CA
"""


def test_import_reports_bad_rows_by_line_and_keeps_good_ones(services):
    with services.transaction() as session:
        report = patients.import_roster(session, ROSTER)
    assert (report.added, report.updated) == (3, 0)
    lines = dict(report.errors)
    assert set(lines) == {4, 5, 6, 8}
    assert "invalid email" in lines[4] and "first_name" in lines[5]
    assert "two-letter" in lines[6] and "twice" in lines[8]
    with services.factory() as session:
        rows = {p.account_number: p for p in session.scalars(select(Patient))}
    assert set(rows) == {"1001", "1002", "1006"}
    assert rows["1001"].email == "ana.lopez@example.com"
    assert rows["1002"].state == "CA" and rows["1001"].status == "roster"
    assert rows["1006"].email is None


def test_import_is_idempotent_and_updates_changes(services):
    good = "account_number,first_name,last_name,email,state\n1001,Ana,Lopez,a@example.com,CA\n"
    for _ in range(2):
        with services.transaction() as session:
            report = patients.import_roster(session, good)
    assert (report.added, report.updated, report.unchanged) == (0, 0, 1)
    with services.transaction() as session:
        report = patients.import_roster(session, good.replace("a@example", "b@example"))
        assert report.updated == 1
    with services.factory() as session:
        p = session.scalars(select(Patient)).one()
        assert p.email == "b@example.com"
        actions = [a.action for a in session.scalars(select(Audit).order_by(Audit.id))]
    assert actions == ["patient.imported", "patient.updated"]


def test_import_without_required_columns_is_refused(services):
    with services.transaction() as session:
        report = patients.import_roster(session, "account,name\n1,x\n")
    assert report.added == 0 and report.errors[0][0] == 1
    assert "account_number" in report.errors[0][1]


def test_lookup_by_email_is_normalised(services):
    with services.transaction() as session:
        patients.import_roster(session, ROSTER)
    with services.factory() as session:
        assert patients.by_email(session, "ANA.LOPEZ@example.COM").account_number == "1001"
        assert patients.by_email(session, "nobody@example.com") is None
        assert patients.by_email(session, "garbage") is None


def test_import_reports_progress_to_the_end(services):
    rows = "".join(f"{2000 + i},P{i},Q,p{i}@example.com,CA\n" for i in range(1200))
    calls = []
    with services.transaction() as session:
        report = patients.import_roster(
            session, "account_number,first_name,last_name,email,state\n" + rows,
            progress=lambda done, total: calls.append((done, total)))
    assert report.added == 1200
    assert calls == [(500, 1200), (1000, 1200), (1200, 1200)]
