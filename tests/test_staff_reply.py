"""The staff round trip: patient -> staff copy -> staff answer from a mail client ->
patient -> patient's reply lands in the same thread."""
from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from email.utils import make_msgid

from sqlalchemy import func, select

from gateway.models import Attachment, Message, Thread
from tests.conftest import wait_for_mail
from tests.helpers import add_patient, patient_mail, smtp_send

PORTAL = "portal@portal.example.org"


def read(path):
    return email.message_from_bytes(path.read_bytes(), policy=email.policy.default)


def staff_reply(staff_copy, sender="nurse@practice.example.org", body=None):
    """What Thunderbird writes when a nurse presses Reply on the staff copy."""
    reply = EmailMessage()
    reply["From"] = f"Nurse Joy <{sender}>"
    reply["To"] = staff_copy["Reply-To"]
    reply["Subject"] = "Re: " + staff_copy["Subject"]
    reply["Message-ID"] = make_msgid(domain="practice.example.org")
    reply["In-Reply-To"] = staff_copy["Message-ID"]
    quoted = "\n".join("> " + line for line in staff_copy.get_content().splitlines())
    reply.set_content((body or "Yes, Tuesday at 10 works. See you then.") +
                      f"\n\nOn Mon, Nov 30, 2026, Portal wrote:\n{quoted}\n")
    return reply


async def test_round_trip_through_staff_and_back(services, gateway):
    add_patient(services)
    root = services.cfg.maildir_root
    first = patient_mail(subject="Reschedule", body="Can I move my appointment to Tuesday? "
                         "My secret phrase is PATIENTQUOTE.")
    await smtp_send(gateway.inbound_port, "ana@example.com", [PORTAL], first.as_bytes())
    staff_copy = read((await wait_for_mail(root, "frontdesk@practice.example.org"))[0])
    reply = staff_reply(staff_copy)
    reply.add_attachment(b"%PDF-1.4 staffpdf" * 10, maintype="application", subtype="pdf",
                         filename="instructions.pdf")
    staff_addr = staff_copy["Reply-To"].addresses[0].addr_spec
    result = await smtp_send(gateway.inbound_port, "nurse@practice.example.org",
                             [staff_addr], reply.as_bytes())
    assert result[:2] == ("DATA", 250)
    answer_path = (await wait_for_mail(root, "ana@example.com", 2))[1]
    answer = read(answer_path)
    body = answer.get_body(("plain",)).get_content()
    assert "Tuesday at 10 works" in body
    assert "PATIENTQUOTE" not in body  # quoted patient text trimmed
    assert b"staffpdf" not in answer_path.read_bytes()
    assert answer["From"].addresses[0].addr_spec == PORTAL
    assert answer["Subject"] == "Re: Reschedule"
    assert answer["In-Reply-To"] == first["Message-ID"]
    assert first["Message-ID"] in answer["References"]
    reply_to = answer["Reply-To"].addresses[0].addr_spec
    assert reply_to.startswith("reply+") and "nurse@" not in answer_path.read_text()
    with services.factory() as session:
        thread = session.scalars(select(Thread)).one()
        assert thread.state == "answered" and thread.answered_at is not None
        assert session.scalar(select(func.count()).select_from(Attachment)) == 1
    again = patient_mail(to=reply_to, subject="Re: Re: Reschedule", body="Great, thank you!",
                         In_Reply_To=answer["Message-ID"])
    result = await smtp_send(gateway.inbound_port, "ana@example.com", [reply_to],
                             again.as_bytes())
    assert result[:2] == ("DATA", 250)
    with services.factory() as session:
        assert session.scalar(select(func.count()).select_from(Thread)) == 1
        thread = session.scalars(select(Thread)).one()
        assert thread.state == "open"  # the patient wrote again: a new clock
        directions = [m.direction for m in session.scalars(select(Message).order_by(Message.id))]
    assert directions == ["patient", "staff", "patient"]


async def test_staff_address_from_outsider_is_refused(services, gateway):
    add_patient(services)
    root = services.cfg.maildir_root
    await smtp_send(gateway.inbound_port, "ana@example.com", [PORTAL],
                    patient_mail().as_bytes())
    staff_copy = read((await wait_for_mail(root, "frontdesk@practice.example.org"))[0])
    staff_addr = staff_copy["Reply-To"].addresses[0].addr_spec
    outsider = await smtp_send(gateway.inbound_port, "mallory@evil.example", [staff_addr],
                               staff_reply(staff_copy, "mallory@evil.example").as_bytes())
    assert outsider[:2] == ("DATA", 550) and outsider[2].startswith("5.7.1")
    patient = await smtp_send(gateway.inbound_port, "ana@example.com", [staff_addr],
                              staff_reply(staff_copy, "ana@example.com").as_bytes())
    assert patient[:2] == ("DATA", 550)
    forged = await smtp_send(gateway.inbound_port, "nurse@practice.example.org", [staff_addr],
                             staff_reply(staff_copy, "mallory@evil.example").as_bytes())
    assert forged[:2] == ("DATA", 550)
    with services.factory() as session:
        assert session.scalars(select(Thread)).one().state == "open"
