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


CLASH = """account_number,first_name,last_name,email,state
2001,Ana,Lopez,ana@example.com,CA
2002,Bo,Lopez, ANA@Example.COM ,CA
2003,Cy,Lopez,cy@example.com,CA
"""


def test_one_address_one_patient_on_import(services):
    with services.transaction() as session:
        report = patients.import_roster(session, CLASH)
    assert report.added == 2
    [(line, problem)] = report.errors
    assert line == 3 and "belongs to patient 2001" in problem and "ana@" not in problem
    moved = "account_number,first_name,last_name,email,state\n2003,Cy,Lopez,Ana@example.com,CA\n"
    with services.transaction() as session:  # an update may not take another's address
        report = patients.import_roster(session, moved)
    assert report.errors and report.errors[0][0] == 2
    with services.factory() as session:
        assert patients.by_email(session, "ana@example.com").account_number == "2001"
        assert patients.by_account(session, "2003").email == "cy@example.com"


def test_the_database_refuses_a_second_patient_with_one_address(services):
    import pytest
    from sqlalchemy.exc import IntegrityError
    from tests.helpers import add_patient
    add_patient(services, account="3001", email="dup@example.com")
    with pytest.raises(IntegrityError):
        add_patient(services, account="3002", email="DUP@example.com")


def test_activate_refuses_a_shared_address(services, capsys):
    from sqlalchemy import text
    from gateway.cli import main as cli
    from tests.helpers import add_patient
    add_patient(services, account="4001", email="shared@example.com", status="active")
    with services.transaction() as session:  # rows from before the index: a shared address
        session.execute(text("update patients set email_index = null"))
    add_patient(services, account="4002", email="other@example.com", status="roster")
    with services.transaction() as session:
        session.execute(text("update patients set email = (select email from patients "
                             "where account_number = '4001') where account_number = '4002'"))
        session.execute(text("update patients set email_index = null"))
    with services.transaction() as session:
        assert patients.fill_email_index(session) == 1  # the first keeps it
    code = cli(["patients", "activate", "4002", "--config", str(services.cfg.path)])
    err = capsys.readouterr().err
    assert code == 1 and "same email address as patient 4001" in err
    with services.factory() as session:
        assert patients.by_account(session, "4002").status == "roster"
        assert patients.by_email(session, "shared@example.com").account_number == "4001"
