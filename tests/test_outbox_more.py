"""DKIM signing, hard bounces, and the template variable allow-list."""
from __future__ import annotations

import shutil
from email.message import EmailMessage

import dkim
from sqlalchemy import select

from gateway import outbox
from gateway.checks import check_templates
from gateway.config import load_config
from gateway.delivery.worker import OutboxWorker
from gateway.models import Outbox, Patient
from gateway.pipeline import Inbound, ingest
from gateway.services import Services
from tests.conftest import ROOT, write_config
from tests.helpers import add_patient, dkim_keypair
from tests.relay import RelayHandler, start_relay


async def test_outgoing_mail_is_dkim_signed(tmp_path, db_url, config):
    key, record = dkim_keypair(tmp_path)
    handler = RelayHandler()
    server, port = await start_relay(handler)
    cfg = load_config(write_config(tmp_path, db_url), overrides={"delivery": {
        "mode": "relay", "relay_port": port, "relay_tls": "none",
        "dkim_selector": "gw1", "dkim_key_file": str(key)}})
    services = Services.create(cfg)
    with services.transaction() as session:
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = "portal@portal.example.org", "a@example.com", "x"
        msg.set_content("Something is waiting for you in the portal.")
        outbox.enqueue(session, services.addresses, msg, "a@example.com", "test")
    worker = OutboxWorker(services)
    await worker.deliver_batch()
    await worker.backend.close()
    server.close()
    raw = handler.received[0][2]
    assert raw.startswith(b"DKIM-Signature:") and b"d=portal.example.org" in raw

    def dns(name, timeout=5):
        assert name == b"gw1._domainkey.portal.example.org."
        return record
    assert dkim.verify(raw, dnsfunc=dns)
    assert not dkim.verify(raw.replace(b"waiting", b"WAITING"), dnsfunc=dns)
    services.close()


def dsn_for(row) -> bytes:
    return (f"From: MAILER-DAEMON@mx.example.com\r\nTo: {row.mail_from}\r\n"
            "Subject: failure\r\nContent-Type: multipart/report; "
            "report-type=delivery-status; boundary=b\r\n\r\n--b\r\n"
            "Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; x\r\n\r\n"
            f"Final-Recipient: rfc822; {row.recipient}\r\nAction: failed\r\n"
            "Status: 5.1.1\r\n\r\n--b--\r\n").encode()


def test_three_hard_bounces_mark_address_undeliverable_and_tell_triage(services):
    pid = add_patient(services)
    with services.transaction() as session:
        for _ in range(3):
            msg = EmailMessage()
            msg["From"], msg["To"], msg["Subject"] = "p@portal.example.org", "ana@example.com", "x"
            msg.set_content("waiting")
            outbox.enqueue(session, services.addresses, msg, "ana@example.com", "ack",
                           patient_id=pid)
    with services.factory() as session:
        rows = session.scalars(select(Outbox)).all()
    for row in rows:
        ingest(services, Inbound(raw=dsn_for(row), mail_from="", rcpt_tos=[row.mail_from]))
    with services.factory() as session:
        patient = session.get(Patient, pid)
        assert patient.undeliverable and patient.hard_bounces == 3
        states = {r.kind: r.state for r in session.scalars(select(Outbox))}
        triage = session.scalars(select(Outbox).where(Outbox.kind == "undeliverable")).one()
    assert states["ack"] == "failed" and triage.recipient == "triage@practice.example.org"
    assert b"ana@example.com" not in triage.raw  # staff are told the account, not the address


def test_patient_template_with_non_allowed_variable_fails_check_config(tmp_path):
    templates = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", templates)
    (templates / "mail" / "ack.txt").write_text(
        "Subject: We got it\n\nDear {{ patient_name }}, you wrote: {{ text }}\n")
    cfg = load_config(write_config(tmp_path, "sqlite:///unused.db"),
                      overrides={"gateway": {"templates_dir": str(templates)}})
    problems = check_templates(cfg)
    assert len(problems) == 2  # the variable, and the Spanish ack no longer matching
    assert "ack.txt" in problems[0] and "not allowed: text" in problems[0]
    assert "es/ack.txt" in problems[1] and "differ from English" in problems[1]
    assert check_templates(load_config(write_config(tmp_path, "sqlite:///unused.db"))) == []
