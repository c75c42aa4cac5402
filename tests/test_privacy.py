"""Privacy canary: unique strings seeded into names, addresses, subjects, bodies and file
names never appear in log output, SMTP replies, or mails whose template may not carry them
(the acknowledgement names the patient's own subject and removed file names, never the body)."""
from __future__ import annotations

import datetime as dt
import io
import logging


import pytest

from gateway import logs, notifications
from gateway.config import load_config
from gateway.deadlines import DeadlineSweeper
from gateway.enrollment.invites import invite
from gateway.models import Patient, utcnow
from tests.conftest import maildir_files, migrate, wait_for_mail, write_config
from tests.helpers import add_patient, patient_mail, smtp_send
from tests.test_staff_reply import read, staff_reply

PORTAL = "portal@portal.example.org"
FIRST, LAST = "Zqxfirstcanary", "Zqxlastcanary"
ADDRESS = "zqxaddrcanary@example.com"
SUBJECT, BODY, FILE = "Zqxsubjcanary", "Zqxbodycanary", "Zqxfilecanary.pdf"
STAFF_TEXT = "Zqxstaffcanary"
CANARIES = [FIRST, LAST, ADDRESS, SUBJECT, BODY, FILE, STAFF_TEXT, "zqxstranger"]
MTA = "mx.practice.example.org"
PASS = f"{MTA}; dmarc=pass header.from=example.com"
FAIL = f"{MTA}; dmarc=fail header.from=example.com"


@pytest.fixture
def config(tmp_path, db_url):
    """Sender authentication on (upstream results), so that file names reach the
    acknowledgement and a spoof reaches the security address: both are checked."""
    migrate(db_url)
    return load_config(write_config(tmp_path, db_url), overrides={"policy": {
        "auth_mode": "upstream", "trusted_authserv_ids": [MTA]}})


async def test_no_phi_in_logs_replies_or_disallowed_mail(services, gateway):
    stream = io.StringIO()
    logs.setup("DEBUG", stream)
    logging.getLogger("mail.log").setLevel(logging.DEBUG)  # what an ops person might do
    logs.setup("DEBUG", stream)  # setup holds aiosmtpd's logger back again
    try:
        replies = await run_story(services, gateway)
    finally:
        logging.getLogger().handlers[:] = []
    log_text = stream.getvalue()
    assert log_text.count("\n") > 5  # the story did log something
    for canary in CANARIES:
        assert canary.lower() not in log_text.lower(), canary
        for reply in replies:
            assert canary.lower() not in reply.lower(), canary
    root = services.cfg.maildir_root
    ack = read((await wait_for_mail(root, ADDRESS, 3))[0])
    ack_text = str(ack)
    assert FILE in ack_text  # removed file names may be listed to the patient
    assert SUBJECT in ack_text  # so is the patient's own subject, to tell acks apart
    assert BODY not in ack_text
    alerts = maildir_files(root, "security@practice.example.org")
    assert alerts, "the spoof of the story must have reached the security address"
    for path in alerts:
        for canary in (SUBJECT, BODY, FILE, FIRST, LAST):
            assert canary not in path.read_text(), canary


async def run_story(services, gateway) -> list[str]:
    pid = add_patient(services, email=ADDRESS, first=FIRST, last=LAST)
    add_patient(services, account="2002", email="zqxinvitee@example.com", status="roster",
                first=FIRST, last=LAST)
    port = gateway.inbound_port
    replies = []
    msg = patient_mail(ADDRESS, subject=SUBJECT, body=f"{BODY}: can I move my appointment?",
                       Authentication_Results=PASS)
    msg.add_attachment(b"%PDF-1.4 x", maintype="application", subtype="pdf", filename=FILE)
    replies.append(str(await smtp_send(port, ADDRESS, [PORTAL], msg.as_bytes())))
    replies.append(str(await smtp_send(port, "zqxstranger@example.net", [PORTAL],
                                       patient_mail("zqxstranger@example.net").as_bytes())))
    forged = patient_mail("zqxstranger@example.net", subject=SUBJECT, body=BODY)
    replies.append(str(await smtp_send(port, ADDRESS, [PORTAL], forged.as_bytes())))
    spoof = patient_mail(ADDRESS, subject=SUBJECT, body=BODY, Authentication_Results=FAIL)
    spoof.add_attachment(b"%PDF-1.4 y", maintype="application", subtype="pdf", filename=FILE)
    replies.append(str(await smtp_send(port, ADDRESS, [PORTAL], spoof.as_bytes())))
    replies.append(str(await smtp_send(port, ADDRESS, ["nobody@portal.example.org"],
                                       msg.as_bytes())))
    staff_copy = read((await wait_for_mail(services.cfg.maildir_root,
                                           "frontdesk@practice.example.org"))[0])
    answer = staff_reply(staff_copy, body=STAFF_TEXT)
    replies.append(str(await smtp_send(port, "nurse@practice.example.org",
                                       [staff_copy["Reply-To"].addresses[0].addr_spec],
                                       answer.as_bytes())))
    with services.transaction() as session:
        patient = session.get(Patient, pid)
        notifications.prepare(services, session, patient,
                              notifications.from_template(services, patient, "lab_result"),
                              "lab_result", "test")
    services.committed()
    invite(services, "2002")
    later = lambda: utcnow() + dt.timedelta(hours=100)  # noqa: E731
    second = patient_mail(ADDRESS, subject=SUBJECT, body=f"{BODY} billing question",
                          Authentication_Results=PASS)
    replies.append(str(await smtp_send(port, ADDRESS, [PORTAL], second.as_bytes())))
    DeadlineSweeper(services, clock=later).sweep_once()
    return replies
