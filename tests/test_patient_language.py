"""Patients who write in Spanish are answered in Spanish, over real SMTP on loopback, on
SQLite and PostgreSQL: the acknowledgement, the bilingual emergency notice (911 first),
X-Portal-Language on the staff copy, and the acknowledgement that names the patient's own
subject and threads to the message it answers.  English stays the default."""
from __future__ import annotations

import quopri
import re

from tests.conftest import wait_for_mail
from tests.helpers import add_patient, patient_mail, smtp_send
from tests.test_smtp_inbound import PORTAL, read

SPANISH = ("Hola, quisiera cambiar mi cita del martes para la próxima semana, por favor. "
           "Muchas gracias.")
SPANISH_URGENT = ("Tengo 30 semanas de embarazo y estoy sangrando mucho desde esta mañana, "
                  "con cólicos muy fuertes.")


def plain(msg) -> str:
    return msg.get_body(("plain",)).get_content()


async def send(gateway, no_id=False, **kw):
    msg = patient_mail(**kw)
    if no_id:
        del msg["Message-ID"]
    result = await smtp_send(gateway.inbound_port, "ana@example.com", [PORTAL],
                             msg.as_bytes())
    assert result[:2] == ("DATA", 250)
    return msg


async def test_spanish_message_gets_a_spanish_acknowledgement(services, gateway):
    add_patient(services)
    msg = await send(gateway, subject="Cambio de cita", body=SPANISH)
    root = services.cfg.maildir_root
    staff = read((await wait_for_mail(root, "frontdesk@practice.example.org"))[0])
    assert staff["X-Portal-Language"] == "es"
    path = (await wait_for_mail(root, "ana@example.com"))[0]
    ack = read(path)
    body = plain(ack)
    assert ack["Subject"].startswith("Recibimos su mensaje: Cambio de cita")
    assert ack["Content-Language"] == "es"
    assert "Estimado(a) Ana Lopez:" in body and "le responderá a más tardar el" in body
    assert re.search(r"(lunes|martes|miércoles|jueves|viernes|sábado|domingo), \d{1,2} de "
                     r"\w+ de 20\d\d, \d{1,2}:\d\d\s[ap]\.\sm\.\sP[SD]T", body), body
    assert "SI ES UNA EMERGENCIA, LLAME AL 911" in body
    assert "“Cambio de cita”" in body and "IF THIS IS AN EMERGENCY" not in body
    assert ack["In-Reply-To"] == msg["Message-ID"] and ack["References"] == msg["Message-ID"]
    assert 'lang="es"' in ack.get_body(("html",)).get_content()


async def test_spanish_emergency_notice_is_bilingual_with_911_first(services, gateway):
    add_patient(services)
    await send(gateway, subject="ayuda", body=SPANISH_URGENT)
    root = services.cfg.maildir_root
    oncall = read((await wait_for_mail(root, "oncall@practice.example.org"))[0])
    assert oncall["X-Portal-Language"] == "es" and oncall["X-Portal-Urgent"] == "yes"
    notice = read((await wait_for_mail(root, "ana@example.com"))[0])
    body = plain(notice)
    assert notice["Subject"].startswith("IMPORTANTE: llame al 911") and \
        "IMPORTANT: call 911" in notice["Subject"]
    assert body.startswith("SI ES UNA EMERGENCIA, LLAME AL 911 AHORA")
    spanish, english = body.index("Estimado(a)"), body.index("IF THIS IS AN EMERGENCY")
    assert spanish < english and "Dear Ana Lopez" in body[english:]
    assert notice["Content-Language"] == "es, en"
    html = notice.get_body(("html",)).get_content()
    assert html.index('lang="es"') < html.index('<div lang="en">')


async def test_unsure_short_emergency_carries_english_and_spanish(services, gateway):
    add_patient(services)
    await send(gateway, subject="help", body="bleeding a lot")
    root = services.cfg.maildir_root
    notice = read((await wait_for_mail(root, "ana@example.com"))[0])
    body = plain(notice)
    assert body.startswith("IF THIS IS AN EMERGENCY, CALL 911 NOW")
    assert "SI ES UNA EMERGENCIA, LLAME AL 911 AHORA" in body


async def test_english_stays_the_default_and_roster_language_wins(services, gateway):
    add_patient(services)
    add_patient(services, account="1002", email="luis@example.com", first="Luis",
                last="Diaz", language="es")
    await send(gateway, subject="Question", body="Can I move my appointment to next week?")
    root = services.cfg.maildir_root
    ack = read((await wait_for_mail(root, "ana@example.com"))[0])
    assert ack["Subject"].startswith("We received your message: Question")
    assert "will answer it by" in plain(ack) and "Estimado" not in plain(ack)
    assert ack["Content-Language"] == "en"
    msg = patient_mail(sender="luis@example.com", subject="ok", body="ok")
    result = await smtp_send(gateway.inbound_port, "luis@example.com", [PORTAL],
                             msg.as_bytes())
    assert result[:2] == ("DATA", 250)
    ack = read((await wait_for_mail(root, "luis@example.com"))[0])
    assert "Estimado(a) Luis Diaz:" in plain(ack)  # short text: the roster decides


async def test_three_messages_without_message_id_get_three_distinct_acks(services,
                                                                         gateway):
    add_patient(services)
    for n, subject in enumerate(("Refill", "Refill", "Billing")):
        await send(gateway, subject=subject, body=f"Can I move my appointment? ({n})",
                   no_id=True)
    acks = [read(p) for p in await wait_for_mail(services.cfg.maildir_root,
                                                 "ana@example.com", 3)]
    refs = {re.search(r"our reference: (M-\d+)", plain(a)).group(1) for a in acks}
    assert len(refs) == 3
    assert {a["X-Portal-Message"] for a in acks} == refs
    assert all(a["In-Reply-To"] is None for a in acks)


async def test_hostile_subject_is_cleaned_before_it_is_quoted(services, gateway):
    add_patient(services)
    hostile = "Re: RE: \u202eevil\u202c <b>x</b>\x07 " + "A" * 300
    await send(gateway, subject=hostile, body="Can I move my appointment?")
    ack = read((await wait_for_mail(services.cfg.maildir_root, "ana@example.com"))[0])
    body, html = plain(ack), ack.get_body(("html",)).get_content()
    for text in (ack["Subject"], body):
        assert "\u202e" not in text and "\x07" not in text and "Re:" not in text
        assert "A" * 120 not in text
    assert "“evil <b>x</b> AAA" in body and "\u2026" in body
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html


async def test_paragraphs_are_not_hard_wrapped_and_travel_quoted_printable(services,
                                                                          gateway):
    add_patient(services)
    await send(gateway, subject="Question", body="Can I move my appointment?")
    path = (await wait_for_mail(services.cfg.maildir_root, "ana@example.com"))[0]
    ack = read(path)
    text_part = ack.get_body(("plain",))
    assert text_part["Content-Transfer-Encoding"] == "quoted-printable"
    assert all(len(line) <= 78 for line in path.read_bytes().decode().splitlines())
    decoded = quopri.decodestring(text_part.get_payload().encode()).decode()
    line = next(x for x in decoded.splitlines() if x.startswith("IF THIS IS"))
    assert line.endswith("time-sensitive matters.")  # one paragraph, one line
    assert "guideline" not in plain(ack).lower()


async def test_staff_copy_lists_removed_files_without_a_lone_bracket(services, gateway):
    add_patient(services)
    msg = patient_mail(subject="bill", body="Please see the attached bill, I was charged "
                       "twice for my last visit.")
    msg.add_attachment(b"%PDF-1.4\n%%EOF\n" * 20, maintype="application", subtype="pdf",
                       filename="bill.pdf")
    result = await smtp_send(gateway.inbound_port, "ana@example.com", [PORTAL],
                             msg.as_bytes())
    assert result[:2] == ("DATA", 250)
    staff = read((await wait_for_mail(services.cfg.maildir_root,
                                      "billing@practice.example.org"))[0])
    text = staff.get_content()
    assert "1 attachment(s) removed" in text and " - bill.pdf" in text
    assert all(line.strip() not in ("[", "]") for line in text.splitlines())
    assert staff["X-Portal-Language"] == "en"
