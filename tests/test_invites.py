"""Enrollment invites on SQLite and PostgreSQL: refusals, hashed single-use links,
resend, reminder, expiry; and the enrollment checks behind the page."""
from __future__ import annotations

import datetime as dt
import email
import email.policy
import re

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select, text

from gateway.deadlines import DeadlineSweeper
from gateway.enrollment import enroll as enrollment
from gateway.enrollment import invites
from gateway.models import Audit, Invite, Outbox, Patient
from tests.helpers import add_patient
from tests.test_deadlines import run_cli

T0 = dt.datetime(2030, 5, 1, 12, 0)
LINK = re.compile(r"(http://127\.0\.0\.1:8025/enroll\?token=)([A-Za-z0-9_-]{40,})")


def mails(services, kind=None) -> list[tuple[str, str]]:
    """(recipient, plain text) of queued mail, oldest first."""
    with services.factory() as session:
        q = select(Outbox).order_by(Outbox.id)
        if kind:
            q = q.where(Outbox.kind == kind)
        rows = session.scalars(q).all()
    out = []
    for row in rows:
        msg = email.message_from_bytes(row.raw, policy=email.policy.default)
        out.append((row.recipient, msg.get_body(("plain",)).get_content()))
    return out


def token_in(body: str) -> str:
    m = LINK.search(body)
    assert m, body
    return m.group(2)


def status(services, account="1001") -> str:
    with services.factory() as session:
        return session.scalar(select(Patient.status).where(Patient.account_number == account))


@pytest.mark.parametrize("kwargs, why", [
    ({"state": "NV"}, "lives in NV; the portal serves only patients living in CA"),
    ({"status": "active"}, "already enrolled (active)"),
    ({"status": "suspended"}, "suspended"),
    ({"email": "not-an-address"}, "is not usable"),
    ({"email": "ana@localhost"}, "is not usable"),
])
def test_refusals_say_why(services, kwargs, why):
    add_patient(services, **{"status": "roster", **kwargs})
    with pytest.raises(invites.InviteRefused, match=re.escape(why)):
        invites.invite(services, "1001")
    assert mails(services) == []


def test_refusals_for_unknown_account_and_bad_email_option(services):
    with pytest.raises(invites.InviteRefused, match="no patient with account 4242"):
        invites.invite(services, "4242")
    add_patient(services, status="roster")
    with pytest.raises(invites.InviteRefused, match="not usable"):
        invites.invite(services, "1001", email="two@@example.com")
    add_patient(services, account="1002", email="bo@example.com", status="active")
    with pytest.raises(invites.InviteRefused, match="already belongs to patient 1002"):
        invites.invite(services, "1001", email="BO@example.com")
    assert status(services) == "roster" and mails(services) == []


def test_invite_mail_link_and_only_a_hash_stored(services):
    add_patient(services, status="roster")
    inv = invites.invite(services, "1001", email="Ana.New@Example.com", now=T0)
    assert status(services) == "invited"
    [(rcpt, body)] = mails(services, "invite")
    assert rcpt == "ana.new@example.com"
    token = token_in(body)
    assert "Dear Ana Lopez" in body and "expires" in body
    assert inv.token_hash == invites.hash_token(token) and len(token) >= 40
    assert inv.expires_at == T0 + dt.timedelta(days=7)
    with services.factory() as session:
        for table in ("invites", "audit", "patients"):
            dump = str(session.execute(text(f"select * from {table}")).all())
            assert token not in dump, table
        assert session.get(Patient, inv.patient_id).email == "ana.new@example.com"
    assert enrollment.link_state(services, token, T0) == "live"
    assert enrollment.link_state(services, token[:-1] + "x", T0) == "unknown"


def test_resend_voids_the_old_link(services):
    add_patient(services, status="roster")
    invites.invite(services, "1001", now=T0)
    invites.invite(services, "1001", now=T0 + dt.timedelta(hours=1))
    first, second = (token_in(b) for _, b in mails(services, "invite"))
    assert first != second
    now = T0 + dt.timedelta(hours=2)
    assert enrollment.link_state(services, first, now) == "void"
    assert enrollment.link_state(services, second, now) == "live"
    assert status(services) == "invited"
    with services.factory() as session:
        assert [i.state for i in session.scalars(select(Invite).order_by(Invite.id))] == \
            ["void", "live"]


def test_reminder_once_with_a_working_link_then_expiry_back_to_roster(services):
    add_patient(services, status="roster")
    invites.invite(services, "1001", now=T0)
    clock = [T0 + dt.timedelta(days=4)]
    sweeper = DeadlineSweeper(services, clock=lambda: clock[0])
    assert sweeper.sweep_once() == 0
    clock[0] = T0 + dt.timedelta(days=5, minutes=1)  # two days before expiry
    assert sweeper.sweep_once() == 1
    assert sweeper.sweep_once() == 0
    clock[0] += dt.timedelta(days=1)
    assert sweeper.sweep_once() == 0
    [(_, body)] = mails(services, "invite_reminder")
    reminder_token = token_in(body)
    [(_, first)] = mails(services, "invite")
    for tok in (reminder_token, token_in(first)):
        assert enrollment.link_state(services, tok, clock[0]) == "live"
    clock[0] = T0 + dt.timedelta(days=7, seconds=1)
    assert sweeper.sweep_once() == 0
    assert status(services) == "roster"
    assert enrollment.link_state(services, reminder_token, clock[0]) == "expired"
    assert len(mails(services, "invite_reminder")) == 1


def test_clock_jump_past_expiry_expires_without_a_reminder(services):
    add_patient(services, status="roster")
    invites.invite(services, "1001", now=T0)
    assert DeadlineSweeper(services, clock=lambda: T0 + dt.timedelta(days=30)).sweep_once() == 0
    assert status(services) == "roster" and mails(services, "invite_reminder") == []


def test_invite_cli_single_and_pending(services, config):
    from gateway.cli import invite_cmd
    add_patient(services, account="1001", status="roster")
    add_patient(services, account="1002", email="bea@example.com", status="roster")
    add_patient(services, account="1003", email="nev@example.com", state="NV", status="roster")
    add_patient(services, account="1004", email="act@example.com", status="active")
    refused = run_cli(invite_cmd, config.path, "invite", "1003", check=False)
    assert refused.returncode == 1 and "lives in NV" in refused.stderr
    refused = run_cli(invite_cmd, config.path, "invite", "1004", check=False)
    assert refused.returncode == 1 and "already enrolled" in refused.stderr
    out = run_cli(invite_cmd, config.path, "invite", "1001").stdout
    assert "invited patient 1001 at ana@example.com" in out
    out = run_cli(invite_cmd, config.path, "invite", "--pending").stdout
    assert "1 invited, 0 refused" in out  # 1002 only: 1001 has a live invite
    assert sorted(r for r, _ in mails(services, "invite")) == ["ana@example.com",
                                                                "bea@example.com"]
    assert "0 invited" in run_cli(invite_cmd, config.path, "invite", "--pending").stdout
    usage = run_cli(invite_cmd, config.path, "invite", check=False)
    assert usage.returncode == 2


def _form(account="1001", password="correct horse battery", confirm=None, agree=True,
          version="v1") -> enrollment.Form:
    return enrollment.Form(account=account, password=password,
                           confirm=password if confirm is None else confirm, agree=agree,
                           terms_version=version)


def test_enroll_saves_everything_or_nothing(services):
    add_patient(services, status="roster")
    invites.invite(services, "1001", now=T0)
    token = token_in(mails(services, "invite")[0][1])
    now = T0 + dt.timedelta(hours=1)
    for form, key in ((_form(password="short"), "password"),
                      (_form(confirm="something else entirely"), "confirm"),
                      (_form(agree=False), "agree"), (_form(version="v0"), "agree"),
                      (_form(account=""), "account")):
        outcome = enrollment.enroll(services, token, form, "v1", now)
        assert list(outcome.errors) == [key] and not outcome.closed
    with services.factory() as session:
        p = session.scalar(select(Patient))
        assert (p.status, p.password_hash, p.terms_version) == ("invited", None, None)
    ok = enrollment.enroll(services, token, _form(account=" 1001 "), "v1", now)
    assert ok.ok and ok.email == "ana@example.com"
    with services.factory() as session:
        p = session.scalar(select(Patient))
        assert p.status == "active" and p.terms_version == "v1" and p.terms_accepted_at == now
        assert p.password_hash.startswith("$argon2id$")
        assert PasswordHasher().verify(p.password_hash, "correct horse battery")
        actions = set(session.scalars(select(Audit.action)))
    assert {"patient.enrolled", "invite.used", "patient.active"} <= actions
    assert enrollment.enroll(services, token, _form(), "v1", now).closed == "used"


def test_five_wrong_account_numbers_void_the_link(services):
    add_patient(services, status="roster")
    invites.invite(services, "1001", now=T0)
    token = token_in(mails(services, "invite")[0][1])
    for attempt in range(1, 5):
        outcome = enrollment.enroll(services, token, _form(account="9999"), "v1", T0)
        assert "account" in outcome.errors
        assert f"{5 - attempt} tr" in outcome.errors["account"]
    assert enrollment.enroll(services, token, _form(account="9999"), "v1", T0).closed == "locked"
    assert enrollment.enroll(services, token, _form(), "v1", T0).closed == "locked"
    assert status(services) == "roster"
