"""A proxy's mail over real SMTP: admitted for its patient with the proxy line and header;
out of scope never silent (banner for staff, "the office will call" for the proxy);
strangers, revoked and only-invited proxies refused with the one uniform text; a proxy of
two patients names the patient in the subject or is told how.  SQLite and PostgreSQL."""
from __future__ import annotations

import datetime as dt
import email
import email.policy

import pytest
from sqlalchemy import select

from gateway.app import Gateway
from gateway.config import load_config
from gateway.models import Audit, Message, Thread
from gateway.services import Services
from tests.conftest import maildir_files, wait_for_mail, write_config
from tests.helpers import add_patient, add_proxy, patient_mail, smtp_send

PORTAL = "portal@portal.example.org"
REFUSAL = ("5.7.1 This address accepts mail only from enrolled portal patients; "
           "please call the office")
MOM = "mom@example.net"
TEEN_BORN = f"{dt.date.today().year - 15}-01-01"
ADULT_BORN = "1960-05-05"


def authed(msg, domain="example.net") -> bytes:
    """The message as the practice's trusted MX passes it on: a DMARC pass for DOMAIN."""
    head = (f"Authentication-Results: mx.practice.example.org; dmarc=pass "
            f"header.from={domain}\r\n").encode()
    return head + msg.as_bytes().replace(b"\n", b"\r\n")


def read(path):
    return email.message_from_bytes(path.read_bytes(), policy=email.policy.default)


def plain(path) -> str:
    return read(path).get_body(("plain",)).get_content()


@pytest.fixture
async def gw(tmp_path, db_url, config):
    cfg = load_config(write_config(tmp_path, db_url), overrides={"policy": {
        "auth_mode": "upstream", "trusted_authserv_ids": ["mx.practice.example.org"]}})
    services = Services.create(cfg)
    gateway = Gateway(services, inbound_port=0, submission_port=0, http_port=0)
    await gateway.start()
    yield gateway
    await gateway.stop(deadline=5)
    services.close()


async def send(gw, sender, body, subject="Question", to=PORTAL, **headers):
    msg = patient_mail(sender=sender, to=to, subject=subject, body=body, **headers)
    return await smtp_send(gw.inbound_port, sender, [to], authed(msg, sender.split("@")[1]))


async def test_proxy_message_admitted_with_proxy_line_and_header(gw):
    s, root = gw.s, gw.s.cfg.maildir_root
    pid = add_patient(s, account="1001", email="teen@example.com", status="roster",
                      birth_date=TEEN_BORN)
    proxy_id = add_proxy(s, pid)
    result = await send(gw, MOM, "Can we move her appointment to next Tuesday morning?",
                        subject="Reschedule")
    assert result[:2] == ("DATA", 250)
    copy = read((await wait_for_mail(root, "frontdesk@practice.example.org"))[0])
    assert copy["X-Portal-Proxy"] == f"id={proxy_id}; relation=mother; scope=within"
    body = copy.get_content()
    assert body.startswith("Sent by Maria Lopez (mother), proxy for Ana Lopez")
    assert "OUTSIDE THIS PROXY'S SCOPE" not in body
    ack = plain((await wait_for_mail(root, MOM))[0])
    assert "Dear Maria Lopez" in ack and "will answer it by" in ack
    assert maildir_files(root, "teen@example.com") == []  # nothing to the patient
    with s.factory() as session:
        thread = session.scalars(select(Thread)).one()
        assert (thread.patient_id, thread.proxy_id, thread.outside_scope) == (pid, proxy_id,
                                                                              False)
        assert session.scalars(select(Message)).one().proxy_id == proxy_id
        row = session.scalars(select(Audit).where(Audit.action == "proxy.message")).one()
    assert (row.patient_id, row.detail["proxy"], row.detail["decision"]) == (
        pid, proxy_id, "within")


@pytest.mark.parametrize("text, reason", [
    ("She thinks she might be pregnant. Can she come in for a test this week?",
     "confidential:pregnancy"),
    ("Mi hija necesita la pastilla del día siguiente, ¿puede darle una cita?",
     "confidential:contraception"),
    ("She has been very anxious about school lately, can she see the counselor?",
     "confidential:mental-health"),
])
async def test_confidential_for_a_teen_reaches_staff_with_banner_and_proxy_is_told_office_calls(
        gw, text, reason):
    s, root = gw.s, gw.s.cfg.maildir_root
    pid = add_patient(s, account="1001", email="teen@example.com", birth_date=TEEN_BORN)
    add_proxy(s, pid, scope="appointment billing medical_question")
    assert (await send(gw, MOM, text, subject="Question"))[:2] == ("DATA", 250)
    ack_path = (await wait_for_mail(root, MOM))[0]
    ack = plain(ack_path)
    assert "the office will call" in ack or "el consultorio le llamará" in ack
    assert "will answer it by" not in ack
    for word in ("pregnan", "embaraz", "pastilla", "anxious", "counselor"):
        assert word not in ack.split("“")[0].lower()  # nothing of why, before the subject
    with s.factory() as session:
        thread = session.scalars(select(Thread)).one()
        assert thread.outside_scope is True
        team = thread.team.split(", ")[0]
    copy = read((await wait_for_mail(root, team))[0])
    assert "scope=outside" in copy["X-Portal-Proxy"]
    assert "OUTSIDE THIS PROXY'S SCOPE: answer only by phone / to the patient" in copy.get_content()
    assert reason in copy.get_content()


async def test_category_outside_scope_is_never_silent_and_emergency_still_urgent(gw):
    s, root = gw.s, gw.s.cfg.maildir_root
    pid = add_patient(s, account="1002", email="dad@example.com", birth_date=ADULT_BORN)
    add_proxy(s, pid, email="son@example.net", relation="son", scope="billing")
    result = await send(gw, "son@example.net", "Can you tell me her lab results from "
                        "the blood test last week?", subject="Lab results")
    assert result[:2] == ("DATA", 250)
    copy = read((await wait_for_mail(root, "nurses@practice.example.org"))[0])
    assert "scope=outside" in copy["X-Portal-Proxy"] and "category:results" in copy.get_content()
    assert "the office will call" in plain((await wait_for_mail(root, "son@example.net"))[0])
    urgent = await send(gw, "son@example.net", "She fell and is bleeding heavily and "
                        "cannot breathe, what do we do?", subject="help")
    assert urgent[:2] == ("DATA", 250)
    oncall = read((await wait_for_mail(root, "oncall@practice.example.org"))[0])
    assert oncall["X-Portal-Urgent"] == "yes" and "proxy for" in oncall.get_content()
    notice = plain((await wait_for_mail(root, "son@example.net", 2))[1])
    assert "911" in notice


async def test_stranger_revoked_and_invited_proxies_get_the_same_refusal(gw):
    s = gw.s
    pid = add_patient(s, account="1001", email="teen@example.com", birth_date=TEEN_BORN)
    add_proxy(s, pid, email="revoked@example.net", status="revoked")
    add_proxy(s, pid, email="invited@example.net", status="invited")
    add_proxy(s, pid, email="MOM@example.net")
    answers = {}
    for sender in ("stranger@example.net", "revoked@example.net", "invited@example.net",
                   "mom@examp1e.net", "mom@example.net.evil.test"):
        answers[sender] = await send(gw, sender, "Can we move her appointment?")
    assert {a[:2] for a in answers.values()} == {("DATA", 550)}
    assert len({a[2] for a in answers.values()}) == 1
    assert next(iter(answers.values()))[2] == REFUSAL
    with s.factory() as session:
        assert session.scalars(select(Message)).all() == []


async def test_revoked_proxy_replaying_an_old_reply_token_is_refused(gw):
    s, root = gw.s, gw.s.cfg.maildir_root
    pid = add_patient(s, account="1001", email="teen@example.com", birth_date=TEEN_BORN)
    proxy_id = add_proxy(s, pid)
    assert (await send(gw, MOM, "Can we move her appointment?"))[:2] == ("DATA", 250)
    ack = read((await wait_for_mail(root, MOM))[0])
    reply_to = ack["Reply-To"].addresses[0].addr_spec
    assert (await send(gw, MOM, "Tuesday works, thanks", to=reply_to))[:2] == ("DATA", 250)
    # the patient cannot write into the proxy's conversation with its token
    teen = await send(gw, "teen@example.com", "hi", to=reply_to)
    assert teen[:2] == ("DATA", 550) and teen[2] == REFUSAL
    from gateway import proxies
    from gateway.models import Proxy
    with s.transaction() as session:
        proxies.revoke(session, session.get(Proxy, proxy_id))
    replay = await send(gw, MOM, "One more question about her appointment", to=reply_to)
    assert replay[:2] == ("DATA", 550) and replay[2] == REFUSAL
    with s.factory() as session:
        assert len(session.scalars(select(Message)).all()) == 2


async def test_proxy_of_two_patients_names_the_patient_in_the_subject(gw):
    s, root = gw.s, gw.s.cfg.maildir_root
    first = add_patient(s, account="1001", email="teen@example.com", birth_date=TEEN_BORN)
    second = add_patient(s, account="1002", email="kid@example.com", first="Leo",
                         birth_date="2019-03-03")
    add_proxy(s, first)
    add_proxy(s, second)
    unclear = await send(gw, MOM, "Can we move the appointment?", subject="Appointment")
    assert unclear[:2] == ("DATA", 550) and unclear[2] == REFUSAL
    notice = plain((await wait_for_mail(root, MOM))[0])
    assert "account number in the subject" in notice
    again = await send(gw, MOM, "Can we move the appointment?", subject="Appointment")
    assert again[:2] == ("DATA", 550)  # refused again; the notice went once today
    for subject in ("Appointment 1001 1002", "Appointment 10021", "Appointment A-1002"):
        both = await send(gw, MOM, "Can we move the appointment?", subject=subject)
        assert both[:2] == ("DATA", 550), subject  # two patients, or none, named
    ok = await send(gw, MOM, "Can we move the appointment?", subject="Appointment 1002")
    assert ok[:2] == ("DATA", 250)
    with s.factory() as session:
        assert session.scalars(select(Thread)).one().patient_id == second
    await wait_for_mail(root, MOM, 2)
    assert len(maildir_files(root, MOM)) == 2  # one notice, one acknowledgement
