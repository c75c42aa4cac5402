"""The MX listener end to end: real SMTP on loopback, real database, Maildir delivery."""
from __future__ import annotations

import email
import email.policy

import pytest
from sqlalchemy import func, select

from gateway.models import Attachment, Message, Outbox, Thread
from tests.conftest import maildir_files, wait_for_mail
from tests.helpers import add_patient, patient_mail, raw_smtp, smtp_send

PORTAL = "portal@portal.example.org"
REFUSAL = ("This address accepts mail only from enrolled portal patients; "
           "please call the office")


def read(path):
    return email.message_from_bytes(path.read_bytes(), policy=email.policy.default)


def count(services, model):
    with services.factory() as session:
        return session.scalar(select(func.count()).select_from(model))


async def test_enrolled_patient_gets_staff_copy_and_ack(services, gateway):
    add_patient(services)
    msg = patient_mail(subject="Reschedule", body="Can I move my appointment to next week?")
    stage, code, text = await smtp_send(gateway.inbound_port, "ana@example.com", [PORTAL],
                                        msg.as_bytes())
    assert (stage, code) == ("DATA", 250)
    root = services.cfg.maildir_root
    staff = read((await wait_for_mail(root, "frontdesk@practice.example.org"))[0])
    assert staff["X-Portal-Category"] == "appointment"
    assert staff["X-Portal-Urgent"] == "no"
    assert staff["Reply-To"].startswith("staff+")
    assert staff["X-Portal-Thread"] and staff["X-Portal-Due"] and staff["X-Portal-Rules"]
    assert staff["X-Portal-Attachments-Removed"] == "0"
    assert staff["From"].addresses[0].display_name == "Ana Lopez"
    assert staff["Subject"].startswith("[Portal: appointment]")
    assert "move my appointment" in staff.get_content()
    ack = read((await wait_for_mail(root, "ana@example.com"))[0])
    assert ack["Auto-Submitted"] == "auto-replied"
    assert ack["Reply-To"].startswith("reply+")
    assert ack["In-Reply-To"] == msg["Message-ID"]
    body = ack.get_body(("plain",)).get_content()
    assert "will answer it by" in body and "(555) 010-0100" in body and "911" in body
    with services.factory() as session:
        thread = session.scalars(select(Thread)).one()
        assert thread.category == "appointment" and thread.state == "open"
        assert (thread.due_at - thread.created_at).total_seconds() == pytest.approx(72 * 3600,
                                                                                    abs=5)


@pytest.mark.parametrize("status,state", [("roster", "CA"), ("invited", "CA"),
                                          ("suspended", "CA"), ("active", "NV")])
async def test_non_active_senders_get_one_uniform_refusal(services, gateway, status, state):
    add_patient(services, status=status, state=state)
    unknown = await smtp_send(gateway.inbound_port, "stranger@example.net", [PORTAL],
                              patient_mail("stranger@example.net").as_bytes())
    known = await smtp_send(gateway.inbound_port, "ana@example.com", [PORTAL],
                            patient_mail().as_bytes())
    assert unknown == known == ("DATA", 550, "5.7.1 " + REFUSAL)  # decided after DATA
    assert count(services, Message) == 0


async def test_sender_address_matches_case_insensitively(services, gateway):
    add_patient(services)
    result = await smtp_send(gateway.inbound_port, "Ana@EXAMPLE.com", [PORTAL],
                             patient_mail("Ana@Example.COM").as_bytes())
    assert result[:2] == ("DATA", 250)


@pytest.mark.parametrize("rcpt", ["nobody@portal.example.org",
                                  "reply+notatoken@portal.example.org",
                                  "staff+notatoken@portal.example.org",
                                  "portal@elsewhere.example.com"])
async def test_unknown_recipients_get_550_511(services, gateway, rcpt):
    add_patient(services)
    stage, code, text = await smtp_send(gateway.inbound_port, "ana@example.com", [rcpt],
                                        patient_mail(to=rcpt).as_bytes())
    assert (stage, code) == ("RCPT", 550) and text.startswith("5.1.1")


async def test_null_sender_refused_for_portal(services, gateway):
    stage, code, text = await smtp_send(gateway.inbound_port, "", [PORTAL], b"x")
    assert (stage, code) == ("RCPT", 550) and text.startswith("5.7.1")


async def test_header_from_must_be_the_patient(services, gateway):
    add_patient(services)
    add_patient(services, account="1002", email="bea@example.com", first="Bea")
    forged = patient_mail(sender="bea@example.com")
    result = await smtp_send(gateway.inbound_port, "ana@example.com", [PORTAL],
                             forged.as_bytes())
    assert result == ("DATA", 550, "5.7.1 " + REFUSAL)
    two_from = patient_mail().as_bytes().replace(b"From: ana@example.com\n",
                                                 b"From: ana@example.com\nFrom: bea@example.com\n")
    assert two_from.count(b"From: ") == 2
    result = await smtp_send(gateway.inbound_port, "ana@example.com", [PORTAL], two_from)
    assert result[:2] == ("DATA", 550)
    assert count(services, Message) == 0


async def test_reply_token_of_another_patient_is_refused(services, gateway):
    add_patient(services)
    add_patient(services, account="1002", email="bea@example.com", first="Bea")
    await smtp_send(gateway.inbound_port, "ana@example.com", [PORTAL],
                    patient_mail().as_bytes())
    ack = read((await wait_for_mail(services.cfg.maildir_root, "ana@example.com"))[0])
    reply_to = ack["Reply-To"].addresses[0].addr_spec
    stolen = await smtp_send(gateway.inbound_port, "bea@example.com", [reply_to],
                             patient_mail("bea@example.com", to=reply_to).as_bytes())
    assert stolen == ("DATA", 550, "5.7.1 " + REFUSAL)
    own = await smtp_send(gateway.inbound_port, "ana@example.com", [reply_to],
                          patient_mail(to=reply_to, body="Thanks, Tuesday works.").as_bytes())
    assert own[:2] == ("DATA", 250)
    with services.factory() as session:
        assert session.scalar(select(func.count()).select_from(Thread)) == 1
        assert session.scalar(select(func.count()).select_from(Message)) == 2


async def test_oversize_message_gets_552(services, gateway):
    add_patient(services)
    big = patient_mail(body="x" * 70 + ("\n" + "y" * 70) * 20000)  # ~1.4 MB > 1 MiB limit
    stage, code, text = await smtp_send(gateway.inbound_port, "ana@example.com", [PORTAL],
                                        big.as_bytes())
    assert (stage, code) == ("DATA", 552) and text.startswith("5.3.4")
    assert count(services, Message) == 0


async def test_database_lost_mid_transaction_gives_451_and_stores_nothing(
        services, gateway, monkeypatch, db_url):
    """A real outage, not a stand-in: after the message row is written, the database
    connection dies (PostgreSQL: pg_terminate_backend from another session; SQLite: the
    connection is closed under the transaction).  The sender gets 451, nothing of the
    message stays, and the next message goes through on a fresh connection.  The outage
    hits every attempt to store the first message (group commit retries a failed shared
    commit one message at a time, and that retry must fail too)."""
    add_patient(services)
    from sqlalchemy import create_engine, text

    from gateway import pipeline
    from gateway.steps import store

    def lose_connection(ctx):
        if ctx.msg is None or ctx.msg["Subject"] != "lost":
            return
        dbapi = ctx.session.connection().connection.dbapi_connection
        if db_url.startswith("postgresql"):
            other = create_engine(db_url)
            with other.connect() as conn:
                conn.execute(text("SELECT pg_terminate_backend(:pid)"),
                             {"pid": dbapi.info.backend_pid})
            other.dispose()
        else:
            dbapi.close()
    chain = list(pipeline.PATIENT_STEPS)
    chain.insert(chain.index(store.store_message) + 1, lose_connection)
    monkeypatch.setitem(pipeline.CHAINS, "portal", tuple(chain))
    result = await smtp_send(gateway.inbound_port, "ana@example.com", [PORTAL],
                             patient_mail(subject="lost").as_bytes())
    assert result == ("DATA", 451, "4.3.0 Temporary failure, please try again later")
    assert count(services, Message) == 0 and count(services, Outbox) == 0
    again = await smtp_send(gateway.inbound_port, "ana@example.com", [PORTAL],
                            patient_mail().as_bytes())
    assert again[:2] == ("DATA", 250) and count(services, Message) == 1


async def test_crashing_step_gives_451_without_detail(services, gateway, monkeypatch):
    add_patient(services)
    from gateway import pipeline

    def explode(ctx):
        raise RuntimeError("secret internal detail /etc/passwd")
    chain = list(pipeline.PATIENT_STEPS)
    chain.insert(5, explode)
    monkeypatch.setitem(pipeline.CHAINS, "portal", tuple(chain))
    stage, code, text = await smtp_send(gateway.inbound_port, "ana@example.com", [PORTAL],
                                        patient_mail().as_bytes())
    assert (stage, code) == ("DATA", 451)
    assert "secret" not in text and "RuntimeError" not in text and "Traceback" not in text
    assert count(services, Message) == 0 and count(services, Outbox) == 0


async def test_bare_lf_in_data_is_refused(services, gateway):
    add_patient(services)
    replies = await raw_smtp(gateway.inbound_port, [
        b"EHLO x\r\n", b"MAIL FROM:<ana@example.com>\r\n", b"RCPT TO:<" + PORTAL.encode()
        + b">\r\n", b"DATA\r\n",
        b"From: ana@example.com\r\nTo: portal@portal.example.org\r\nSubject: x\r\n\r\n"
        b"line one\n.\nMAIL FROM:<ana@example.com>\r\nmore\r\n.\r\n", b"QUIT\r\n"])
    assert replies[-2].startswith(b"550 5.5.2"), replies
    assert count(services, Message) == 0


async def test_automatic_mail_is_stored_but_not_answered(services, gateway):
    add_patient(services)
    auto = patient_mail(body="I am out of the office until Monday.",
                        Auto_Submitted="auto-replied")
    result = await smtp_send(gateway.inbound_port, "ana@example.com", [PORTAL],
                             auto.as_bytes())
    assert result[:2] == ("DATA", 250)
    await wait_for_mail(services.cfg.maildir_root, "triage@practice.example.org")
    assert maildir_files(services.cfg.maildir_root, "ana@example.com") == []
    with services.factory() as session:
        assert session.scalars(select(Message)).one().automatic is True


async def test_emergency_gets_notice_and_on_call_copy(services, gateway):
    add_patient(services)
    msg = patient_mail(subject="question", body="I am 30 weeks pregnant and I have heavy "
                       "bleeding and cramping since this morning.")
    result = await smtp_send(gateway.inbound_port, "ana@example.com", [PORTAL],
                             msg.as_bytes())
    assert result[:2] == ("DATA", 250)
    root = services.cfg.maildir_root
    oncall = read((await wait_for_mail(root, "oncall@practice.example.org"))[0])
    assert oncall["X-Portal-Urgent"] == "yes" and oncall["X-Portal-Category"] == "emergency"
    assert "URGENT" in oncall["Subject"]
    await wait_for_mail(root, "nurses@practice.example.org")
    notice = read((await wait_for_mail(root, "ana@example.com"))[0])
    assert "911" in notice["Subject"] + notice.get_body(("plain",)).get_content()
    assert "will answer it by" not in notice.get_body(("plain",)).get_content()


async def test_attachments_removed_logged_and_absent_from_every_mail(services, gateway):
    add_patient(services)
    msg = patient_mail(subject="my billing statement",
                       body="Please see the attached bill, I was charged twice.")
    pdf = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\nZZSECRETPDFBYTES" * 20
    msg.add_attachment(pdf, maintype="application", subtype="pdf", filename="bill.pdf")
    result = await smtp_send(gateway.inbound_port, "ana@example.com", [PORTAL],
                             msg.as_bytes())
    assert result[:2] == ("DATA", 250)
    root = services.cfg.maildir_root
    staff_path = (await wait_for_mail(root, "billing@practice.example.org"))[0]
    ack_path = (await wait_for_mail(root, "ana@example.com"))[0]
    staff = read(staff_path)
    assert staff["X-Portal-Attachments-Removed"] == "1"
    assert "bill.pdf" in staff.get_content() and "charged twice" in staff.get_content()
    assert "attachments (1)" in read(ack_path).get_body(("plain",)).get_content()  # auth off: no names
    for path in (staff_path, ack_path):
        assert b"ZZSECRETPDFBYTES" not in path.read_bytes()
        assert b"%PDF" not in path.read_bytes()
    with services.factory() as session:
        att = session.scalars(select(Attachment)).one()
        assert att.filename == "bill.pdf" and att.sniffed_type == "application/pdf"
        assert att.size == len(pdf) and len(att.sha256) == 64
        import hashlib
        assert att.sha256 == hashlib.sha256(pdf).hexdigest()


async def test_header_that_breaks_the_parser_is_still_handled(services, gateway):
    add_patient(services)
    raw = (b"From: Ana <ana@example.com>\r\nTo: portal@portal.example.org\r\n"
           b"Subject: appointment\r\nContent-Type: text/plain; title*\r\n\r\n"
           b"Can I reschedule my appointment?\r\n")
    result = await smtp_send(gateway.inbound_port, "ana@example.com", [PORTAL], raw)
    assert result[:2] == ("DATA", 250)
    staff = read((await wait_for_mail(services.cfg.maildir_root,
                                      "frontdesk@practice.example.org"))[0])
    assert "reschedule my appointment" in staff.get_content()


async def test_quick_start_as_written_in_the_readme(services, gateway):
    """README's first conversation: smtplib.send_message (MAIL FROM with SIZE), auth off."""
    import asyncio
    import smtplib
    from email.message import EmailMessage
    add_patient(services)

    def send():
        m = EmailMessage()
        m["From"] = "ana@example.com"
        m["To"] = PORTAL
        m["Subject"] = "Appointment"
        m.set_content("Can I move my appointment to next week?")
        with smtplib.SMTP("127.0.0.1", gateway.inbound_port) as client:
            client.send_message(m)
    await asyncio.to_thread(send)
    root = services.cfg.maildir_root
    await wait_for_mail(root, "frontdesk@practice.example.org")
    await wait_for_mail(root, "ana@example.com")
