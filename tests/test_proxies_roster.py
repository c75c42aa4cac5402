"""Proxies in the roster: import (hostile rows refused by line, good rows kept), list,
revoke, invite and enrollment with the proxy's own password; SQLite and PostgreSQL."""
from __future__ import annotations

import datetime as dt
import json

from argon2 import PasswordHasher
from sqlalchemy import select

from gateway import patients, proxies
from gateway.enrollment import enroll as enrollment
from gateway.enrollment import proxy_invites
from gateway.enrollment.invites import InviteRefused
from gateway.models import Audit, Invite, Patient, Proxy
from tests.helpers import add_patient, add_proxy
from tests.test_deadlines import run_cli
from tests.test_invites import _form, mails, token_in

HEADER = "patient_account,first_name,last_name,email,relation,scope\n"


def _import(services, rows: str):
    with services.transaction() as session:
        return proxies.import_proxies(session, HEADER + rows)


def _proxies(services) -> dict:
    with services.factory() as session:
        return {p.email: (p.first_name, p.relation, p.scope, p.status)
                for p in session.scalars(select(Proxy))}


def test_import_keeps_good_rows_and_refuses_hostile_ones_by_line(services):
    add_patient(services, account="1001", email="teen@example.com", status="roster")
    add_patient(services, account="1002", email="gran@example.com")
    report = _import(services, "\n".join([
        "1001,Maria,Lopez,Mom@Example.NET,Mother,appointment billing",   # 2 good
        "1002,Joe,Kim,joe@example.org,legal guardian,",                  # 3 good, default
        "9999,Sam,Roe,sam@example.org,father,",                          # 4 unknown patient
        "1001,=HYPERLINK(\"http://x\"),Lopez,x1@example.org,father,",    # 5 formula
        "1001,+cmd,Lopez,x2@example.org,father,",                        # 6 formula
        "1001,@SUM(A1),Lopez,x3@example.org,father,",                    # 7 formula
        "1001,Ann\u202e,Lopez,x4@example.org,aunt,",                     # 8 bidi control
        "1001,Pat,Lee,pat@ex\uff41mple.org,aunt,",                       # 9 full-width
        "1001,Pat,Lee,\"Pat <pat@example.org>\",aunt,",                  # 10 display name
        "1001,Pat,Lee,TEEN@example.com,aunt,",                           # 11 patient's own
        "1001,Pat,Lee,pat@example.org,aunt,appointment gossip",          # 12 not a category
        "1001,Pat,Lee,pat@example.org,=cmd|calc,",                       # 13 relation
        "1001,Maria,Lopez,mom@example.net,mother,billing",               # 14 twice in file
        "",
    ]))
    assert (report.added, report.updated) == (2, 0)
    lines = dict(report.errors)
    assert set(lines) == {4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14}
    assert "no patient with account 9999" in lines[4]
    assert all("spreadsheet formula" in lines[n] for n in (5, 6, 7))
    assert "control" in lines[8]
    assert "not a plain address" in lines[9] and "not a plain address" in lines[10]
    assert "patient 1001's own address" in lines[11]
    assert "'gossip' is not a category" in lines[12]
    assert "relation" in lines[13] and "twice" in lines[14]
    assert _proxies(services) == {
        "mom@example.net": ("Maria", "mother", "appointment billing", "roster"),
        "joe@example.org": ("Joe", "legal guardian", None, "roster")}


def test_import_is_idempotent_and_a_patient_cannot_take_a_proxy_address(services):
    add_patient(services, account="1001", status="roster")
    row = "1001,Maria,Lopez,mom@example.net,mother,\n"
    for _ in range(2):
        report = _import(services, row)
    assert (report.added, report.updated, report.unchanged) == (0, 0, 1)
    assert _import(services, row.replace(",\n", ",billing\n")).updated == 1
    with services.transaction() as session:
        roster = patients.import_roster(
            session, "account_number,first_name,last_name,email,state,birth_date\n"
                     "1002,Bo,Lee,MOM@example.net,CA,\n1003,Cy,Ng,cy@example.com,CA,2011-13-01\n"
                     "1004,Di,Ng,di@example.com,CA,2012-04-30\n")
    lines = dict(roster.errors)
    assert "address of proxy" in lines[2] and "YYYY-MM-DD" in lines[3]
    with services.factory() as session:
        assert session.scalar(select(Patient.birth_date).where(
            Patient.account_number == "1004")) == "2012-04-30"
        actions = [a.action for a in session.scalars(select(Audit).where(
            Audit.object_type == "proxy").order_by(Audit.id))]
    assert actions == ["proxy.imported", "proxy.updated"]


def test_cli_import_list_revoke(services, config, tmp_path):
    from gateway.cli import proxies_cmd
    add_patient(services, account="1001", status="roster")
    csv = tmp_path / "proxies.csv"
    csv.write_text(HEADER + "1001,Maria,Lopez,mom@example.net,mother,\n"
                   "1001,Bad,Row,nobody,father,\n")
    done = run_cli(proxies_cmd, config.path, "proxies", "import", str(csv), check=False)
    assert done.returncode == 1 and f"{csv}:3:" in done.stderr
    assert "1 added, 0 updated, 0 unchanged, 1 rejected" in done.stdout
    listed = run_cli(proxies_cmd, config.path, "proxies", "list", "--json").stdout
    row = json.loads(listed.splitlines()[0])
    assert row["patient_account"] == "1001" and row["default_scope"] is True
    assert row["scope"] == "appointment billing demographics surgery"
    out = run_cli(proxies_cmd, config.path, "proxies", "revoke", "MOM@example.net").stdout
    assert f"proxy {row['id']} is now revoked" in out
    assert _proxies(services)["mom@example.net"][3] == "revoked"
    again = run_cli(proxies_cmd, config.path, "proxies", "invite", str(row["id"]), check=False)
    assert again.returncode == 1 and "revoked" in again.stderr
    missing = run_cli(proxies_cmd, config.path, "proxies", "revoke", "nobody@x.org",
                      check=False)
    assert missing.returncode == 1 and "no proxy" in missing.stderr


def test_proxy_invite_and_enrollment_with_its_own_password(services):
    patient_id = add_patient(services, account="1001", status="roster")
    proxy_id = add_proxy(services, patient_id, status="roster")
    proxy_invites.invite(services, "mom@example.net")
    (recipient, body), = mails(services, "proxy_invite")
    assert recipient == "mom@example.net" and "Dear Maria Lopez" in body
    assert "patient's account number" in body
    token = token_in(body)
    now = dt.datetime.utcnow()
    assert enrollment.link_is_proxy(services, token)
    wrong = enrollment.enroll(services, token, _form(account="9999"), "v1", now)
    assert "account" in wrong.errors
    ok = enrollment.enroll(services, token, _form(account="1001"), "v1", now)
    assert ok.ok and ok.email == "mom@example.net"
    with services.factory() as session:
        proxy, patient = session.get(Proxy, proxy_id), session.get(Patient, patient_id)
        assert proxy.status == "active" and proxy.terms_version == "v1"
        assert PasswordHasher().verify(proxy.password_hash, "correct horse battery")
        assert patient.status == "roster" and patient.password_hash is None
        assert session.scalar(select(Invite.state)) == "used"
    try:
        proxy_invites.invite(services, str(proxy_id))
    except InviteRefused as e:
        assert "already enrolled" in str(e)
    else:
        raise AssertionError("an active proxy was invited again")


def test_revoking_voids_a_live_proxy_invite(services):
    patient_id = add_patient(services, account="1001", status="active")
    proxy_id = add_proxy(services, patient_id, status="roster")
    proxy_invites.invite(services, str(proxy_id))
    token = token_in(mails(services, "proxy_invite")[0][1])
    with services.transaction() as session:
        assert proxies.revoke(session, session.get(Proxy, proxy_id))
    now = dt.datetime.utcnow()
    assert enrollment.enroll(services, token, _form(), "v1", now).closed == "void"


def test_inspect_shows_the_scope_decision_for_each_proxy(services, config, tmp_path):
    from gateway.cli import inspect_cmd
    from tests.helpers import patient_mail
    teen = add_patient(services, account="1001", email="teen@example.com",
                       birth_date=f"{dt.date.today().year - 15}-06-01")
    add_proxy(services, teen, scope="appointment medical_question")
    add_proxy(services, teen, email="gone@example.net", status="revoked")
    files = []
    for name, body in (("plain.eml", "Can we move her appointment to Tuesday?"),
                       ("conf.eml", "Can she get birth control pills at the appointment?")):
        path = tmp_path / name
        path.write_bytes(patient_mail(sender="mom@example.net", body=body).as_bytes())
        files.append(str(path))
    out = run_cli(inspect_cmd, config.path, "inspect", "--json", "--proxy", "1001",
                  *files).stdout
    plain, conf = (json.loads(line) for line in out.splitlines())
    assert [p["decision"] for p in plain["proxies"]] == ["within"]
    assert plain["proxies"][0]["scope"] == ["appointment"]  # medical_question: minor rule
    assert conf["confidential"] == ["contraception"]
    assert conf["proxies"][0]["decision"] == "outside"
    assert "confidential:contraception" in conf["proxies"][0]["reasons"]
    human = run_cli(inspect_cmd, config.path, "inspect", "--proxy", "1001", files[1]).stdout
    assert "(mother) scope appointment: outside (" in human
    missing = run_cli(inspect_cmd, config.path, "inspect", "--proxy", "9", files[0],
                      check=False)
    assert missing.returncode != 0 and "no patient with account 9" in missing.stderr


def test_proxy_invite_reminder_then_expiry_back_to_roster(services):
    from gateway.enrollment import invites
    from tests.test_invites import T0
    patient_id = add_patient(services, account="1001", status="active")
    proxy_id = add_proxy(services, patient_id, status="roster")
    with services.transaction() as session:
        proxy_invites.create(session, services, session.get(Proxy, proxy_id), now=T0)
    assert invites.sweep(services, T0 + dt.timedelta(days=6)) == 1
    (recipient, body), = mails(services, "proxy_invite_reminder")
    assert recipient == "mom@example.net" and "on behalf of a patient" in body
    invites.sweep(services, T0 + dt.timedelta(days=8))
    with services.factory() as session:
        assert session.get(Proxy, proxy_id).status == "roster"
        assert session.get(Patient, patient_id).status == "active"  # untouched
    add_patient(services, account="1002", email="bo@example.com", status="roster")
    try:
        invites.invite(services, "1002", email="MOM@example.net")
    except InviteRefused as e:
        assert f"is the address of proxy {proxy_id}" in str(e)
    else:
        raise AssertionError("a patient was invited at a proxy's address")
