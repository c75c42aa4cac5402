"""Portal notifications over the submission port, replies to them, DSNs, header safety."""
from __future__ import annotations

import email
import email.policy
import datetime as dt

import aiosmtplib
import pytest
from argon2 import PasswordHasher
from sqlalchemy import select

from gateway.app import Gateway
from gateway.config import load_config
from gateway.models import Outbox, Patient, Thread, Token
from gateway.services import Services
from tests.conftest import maildir_files, wait_for_mail, write_config
from tests.helpers import add_patient, patient_mail, smtp_send

SECRET = "portal-app-secret-123"


@pytest.fixture
async def gw(tmp_path, db_url, config):  # `config` migrates the database
    cfg = load_config(write_config(tmp_path, db_url), overrides={
        "smtp": {"submission_users": {"portal_app": PasswordHasher().hash(SECRET)}}})
    services = Services.create(cfg)
    gateway = Gateway(services, inbound_port=0, submission_port=0)
    await gateway.start()
    yield gateway
    await gateway.stop(deadline=5)
    services.close()


def read(path):
    return email.message_from_bytes(path.read_bytes(), policy=email.policy.default)


def notification(kind="lab_result", to="ana@example.com"):
    msg = patient_mail(sender="app@portal.example.org", to=to, subject="New result",
                       body="A new result is waiting for you in the portal.")
    if kind is not None:
        msg["X-Portal-Kind"] = kind
    return msg


async def submit(gw, msg, rcpts, login=("portal_app", SECRET)):
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=gw.submission_port, timeout=10,
                             start_tls=False)
    await client.connect()
    try:
        if login:
            await client.login(*login)
        errors, _ = await client.sendmail("app@portal.example.org", rcpts, msg.as_bytes())
        return errors
    finally:
        client.close()


async def test_auth_is_required_and_checked(gw):
    add_patient(gw.s)
    with pytest.raises(aiosmtplib.SMTPResponseException) as e:
        await submit(gw, notification(), ["ana@example.com"], login=None)
    assert e.value.code == 530
    with pytest.raises(aiosmtplib.SMTPAuthenticationError):
        await submit(gw, notification(), ["ana@example.com"], login=("portal_app", "wrong"))


def test_the_dummy_hash_is_made_once_by_the_first_check_of_any_login():
    """No start pays an Argon2 hash for the dummy; the first check makes it whether the
    login exists or not (so its cost tells nothing), with the configured hash's costs."""
    from gateway.smtp.auth import Authenticator
    hashed = PasswordHasher().hash(SECRET)
    auth = Authenticator({"portal_app": hashed})
    assert auth._dummy is None
    assert auth._verify("portal_app", SECRET.encode())
    made = auth._dummy
    assert made is not None and made.split("$")[:4] == hashed.split("$")[:4]
    assert not auth._verify("nobody", SECRET.encode())
    assert auth._dummy == made


async def test_repeated_auth_failures_back_off_and_unknown_users_fail_alike(gw):
    add_patient(gw.s)
    codes = []
    for login in [("nobody", SECRET)] + [("portal_app", f"wrong{i}") for i in range(5)]:
        with pytest.raises(aiosmtplib.SMTPAuthenticationError) as e:
            await submit(gw, notification(), ["ana@example.com"], login=login)
        codes.append(e.value.code)
    assert codes[0] == 535 and codes[-1] == 454  # the client may try two mechanisms a login
    with pytest.raises(aiosmtplib.SMTPAuthenticationError) as e:  # even the right secret
        await submit(gw, notification(), ["ana@example.com"])
    assert e.value.code == 454 and e.value.message.startswith("4.7.0")


@pytest.mark.parametrize("kind", ["newsletter", None, "Marketing"])
async def test_non_transactional_kinds_are_refused(gw, kind):
    add_patient(gw.s)
    with pytest.raises(aiosmtplib.SMTPDataError) as e:
        await submit(gw, notification(kind), ["ana@example.com"])
    assert e.value.code == 550 and e.value.message.startswith("5.7.1")
    assert "transactional" in e.value.message
    with gw.s.factory() as session:
        assert session.scalars(select(Outbox)).all() == []


async def test_notification_relayed_and_reply_lands_in_its_thread(gw):
    add_patient(gw.s)
    add_patient(gw.s, account="1002", email="inv@example.com", status="invited")
    errors = await submit(gw, notification(), ["ana@example.com", "inv@example.com"])
    assert errors["inv@example.com"][0] == 550
    assert errors["inv@example.com"][1].startswith("5.1.1")
    root = gw.s.cfg.maildir_root
    sent = read((await wait_for_mail(root, "ana@example.com"))[0])
    assert sent["X-Portal-Kind"] is None and sent["Auto-Submitted"] == "auto-generated"
    reply_to = sent["Reply-To"].addresses[0].addr_spec
    assert reply_to.startswith("reply+") and sent["Message-ID"]
    assert maildir_files(root, "inv@example.com") == []
    reply = patient_mail(to=reply_to, subject="Re: New result",
                         body="Thanks. What does it mean?", In_Reply_To=sent["Message-ID"])
    result = await smtp_send(gw.inbound_port, "ana@example.com", [reply_to], reply.as_bytes())
    assert result[:2] == ("DATA", 250)
    staff = read((await wait_for_mail(root, "nurses@practice.example.org"))[0])
    assert staff["X-Portal-Category"] == "results"
    with gw.s.factory() as session:
        thread = session.scalars(select(Thread)).one()
        assert thread.kind == "lab_result" and thread.state == "open"
        assert thread.public_id == staff["X-Portal-Thread"]


async def test_dsn_to_bounce_address_marks_that_mail_failed(gw):
    add_patient(gw.s)
    await submit(gw, notification(), ["ana@example.com"])
    sent = read((await wait_for_mail(gw.s.cfg.maildir_root, "ana@example.com"))[0])
    with gw.s.factory() as session:
        row = session.scalars(select(Outbox)).one()
        bounce_addr = row.mail_from
    assert bounce_addr.startswith("bounces+")
    dsn = (f"From: MAILER-DAEMON@mx.example.com\r\nTo: {bounce_addr}\r\n"
           "Subject: Undelivered Mail\r\nMIME-Version: 1.0\r\n"
           "Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n"
           "--b\r\nContent-Type: text/plain\r\n\r\nFailed.\r\n"
           "--b\r\nContent-Type: message/delivery-status\r\n\r\n"
           "Reporting-MTA: dns; mx.example.com\r\n\r\n"
           "Final-Recipient: rfc822; ana@example.com\r\nAction: failed\r\n"
           "Status: 5.1.1\r\n\r\n--b--\r\n").encode()
    assert sent["X-Portal-Outbox"] == str(row.id)
    refused = await smtp_send(gw.inbound_port, "", ["portal@portal.example.org"], dsn)
    assert refused[:2] == ("RCPT", 550)
    result = await smtp_send(gw.inbound_port, "", [bounce_addr], dsn)
    assert result[:2] == ("DATA", 250)
    with gw.s.factory() as session:
        row = session.get(Outbox, row.id)
        assert row.state == "failed" and "bounced" in row.last_error
    not_null = await smtp_send(gw.inbound_port, "mallory@evil.example", [bounce_addr], dsn)
    assert not_null[:2] == ("RCPT", 550) and not_null[2].startswith("5.7.1")
    for _ in range(3):  # replays of one DSN count one bounce, never "undeliverable"
        assert (await smtp_send(gw.inbound_port, "", [bounce_addr], dsn))[:2] == ("DATA", 250)
    with gw.s.transaction() as session:
        patient = session.scalars(select(Patient)).one()
        assert patient.hard_bounces == 1 and not patient.undeliverable
        token = session.get(Token, bounce_addr.split("+")[1].split("@")[0])
        token.created_at -= dt.timedelta(days=gw.s.cfg.delivery.bounce_token_days + 1)
    expired = await smtp_send(gw.inbound_port, "", [bounce_addr], dsn)
    assert expired[:2] == ("RCPT", 550) and expired[2].startswith("5.1.1")


async def test_patient_name_cannot_inject_headers(gw):
    add_patient(gw.s, first="Eve\r\nBcc: x@evil.example", last="X\nX-Evil: 1")
    add_patient(gw.s, account="1002", email="eve@example.com",
                first="Eve\r\nBcc: x@evil.example")
    await submit(gw, notification(), ["eve@example.com"])
    result = await smtp_send(gw.inbound_port, "ana@example.com", ["portal@portal.example.org"],
                             patient_mail().as_bytes())
    assert result[:2] == ("DATA", 250)
    root = gw.s.cfg.maildir_root
    paths = (await wait_for_mail(root, "ana@example.com") + await wait_for_mail(
        root, "frontdesk@practice.example.org") + await wait_for_mail(root, "eve@example.com"))
    for path in paths:
        msg = read(path)
        assert msg["Bcc"] is None and msg["X-Evil"] is None
        assert b"\nBcc:" not in path.read_bytes() and b"\nX-Evil:" not in path.read_bytes()
    assert not (root / "x@evil.example").exists()


async def test_staff_answer_with_auth_on_the_submission_listener(gw):
    from tests.test_staff_reply import staff_reply
    add_patient(gw.s)
    root = gw.s.cfg.maildir_root
    assert (await smtp_send(gw.inbound_port, "ana@example.com", ["portal@portal.example.org"],
                            patient_mail().as_bytes()))[:2] == ("DATA", 250)
    staff_copy = read((await wait_for_mail(root, "frontdesk@practice.example.org"))[0])
    staff_addr = staff_copy["Reply-To"].addresses[0].addr_spec
    errors = await submit(gw, staff_reply(staff_copy), [staff_addr])
    assert errors == {}
    answers = await wait_for_mail(root, "ana@example.com", 2)  # the ack, then the answer
    assert any("Tuesday at 10" in read(p).get_body(("plain",)).get_content() for p in answers)
    mixed = await submit(gw, notification(), ["ana@example.com", staff_addr])
    assert mixed[staff_addr][0] == 452  # one kind of recipient per message
async def test_each_patient_sees_only_their_own_address(gw):
    add_patient(gw.s)
    add_patient(gw.s, account="1002", email="bo@example.com", first="Bo", last="Ng")
    msg = notification(to="ana@example.com, bo@example.com, someone@elsewhere.example")
    msg["Cc"] = "bo@example.com, third@example.net"
    msg["Bcc"] = "hidden@example.net"
    msg["Resent-To"] = "bo@example.com"
    assert await submit(gw, msg, ["ana@example.com", "bo@example.com"]) == {}
    root = gw.s.cfg.maildir_root
    for me, other in (("ana@example.com", "bo@example.com"),
                      ("bo@example.com", "ana@example.com")):
        [path] = await wait_for_mail(root, me)
        mail = read(path)
        assert [a.addr_spec for a in mail["To"].addresses] == [me]
        assert mail["Cc"] is None and mail["Bcc"] is None and mail["Resent-To"] is None
        head = path.read_bytes().split(b"\n\n", 1)[0].lower()
        for hidden in (other, "someone@elsewhere", "third@example.net", "hidden@example.net"):
            assert hidden.encode() not in head, hidden
