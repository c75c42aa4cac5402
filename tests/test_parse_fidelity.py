"""Parse fidelity: a body survives whatever a major mail client writes.

Each case is written by hand after a quirk seen in public MIME parser test corpora (older
Outlook boundaries, UTF-8 under a wrong charset label, missing MIME-Version, 8-bit headers,
Windows-1252 under a Latin-1 label, a multipart without its boundary parameter, a
transfer encoding with stray spaces...).  Each checks the text staff receive: through the
content steps (`inspect`, the same steps as `ingest`) and, for the two issues found in
production, over real SMTP to the staff copy."""
from __future__ import annotations

import email
import email.policy

import pytest

from gateway.classification import Classifier
from gateway.cli.inspect_cmd import inspect_bytes
from tests.conftest import ROOT, wait_for_mail
from tests.helpers import add_patient, smtp_send

CLASSIFIER = Classifier.load(ROOT / "rules")
HEAD = b"From: Ana <ana@example.com>\r\nTo: portal@portal.example.org\r\nSubject: cita\r\n"
CITA = "Necesito cambiar mi cita del martes, señora. Gracias — Ana"

CASES = {
    "unquoted boundary with '=' (older Outlook)": (
        HEAD + b"MIME-Version: 1.0\r\n"
        b"Content-Type: multipart/alternative; boundary=----=_NextPart_000_0012_01D2\r\n\r\n"
        b"------=_NextPart_000_0012_01D2\r\nContent-Type: text/plain\r\n\r\n"
        b"Can I move my appointment?\r\n------=_NextPart_000_0012_01D2--\r\n",
        "Can I move my appointment?"),
    "folded unquoted boundary": (
        HEAD + b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed;\r\n\tboundary=--=_b=1\r\n"
        b"\r\n----=_b=1\r\nContent-Type: text/plain\r\n\r\nfolded body kept\r\n----=_b=1--\r\n",
        "folded body kept"),
    "UTF-8 body labelled GB2312": (
        HEAD + b"Content-Type: text/plain; charset=GB2312\r\n\r\n" + CITA.encode(), CITA),
    "UTF-8 body labelled ISO-8859-1": (
        HEAD + b"Content-Type: text/plain; charset=iso-8859-1\r\n\r\n" + CITA.encode(), CITA),
    "real GB2312 body stays GB2312": (
        HEAD + b"Content-Type: text/plain; charset=gb2312\r\n\r\n"
        + "你好，我想预约下周的门诊。".encode("gb2312"), "你好，我想预约下周的门诊。"),
    "Windows-1252 quotes under a Latin-1 label": (
        HEAD + b"Content-Type: text/plain; charset=iso-8859-1\r\n\r\n"
        b"\x93Can I come at 3?\x94 I\x92m free \x96 thanks",
        "“Can I come at 3?” I’m free – thanks"),
    "missing MIME-Version": (
        HEAD + b'Content-Type: multipart/mixed; boundary="x"\r\n\r\n--x\r\n'
        b"Content-Type: text/plain\r\n\r\nno version header\r\n--x--\r\n", "no version header"),
    "multipart without a boundary parameter": (
        HEAD + b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed\r\n\r\n--zz\r\n"
        b"Content-Type: text/plain\r\n\r\nboundary found in the body\r\n--zz--\r\n",
        "boundary found in the body"),
    "8-bit UTF-8 body without any Content-Type": (
        HEAD + "¿Puedo cambiar mi cita?".encode(), "¿Puedo cambiar mi cita?"),
    "8-bit UTF-8 headers": (
        "From: José <ana@example.com>\r\nSubject: Cita médica mañana\r\n\r\nhola".encode(),
        "hola"),
    "transfer encoding with capitals and a trailing space": (
        HEAD + b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: "
        b"Base64 \r\n\r\nQ2FuIEkgbW92ZSBteSBhcHBvaW50bWVudD8\r\n", "Can I move my appointment?"),
    "quoted charset with a trailing semicolon": (
        HEAD + b'Content-Type: text/plain; charset="utf-8";\r\n\r\n' + CITA.encode(), CITA),
    "Korean under Outlook's ks_c_5601-1987": (
        HEAD + b"Content-Type: text/plain; charset=ks_c_5601-1987\r\n\r\n"
        + "다음 주 예약을 변경하고 싶습니다".encode("cp949"), "다음 주 예약을 변경하고 싶습니다"),
    "Japanese ISO-2022-JP": (
        HEAD + b"Content-Type: text/plain; charset=ISO-2022-JP\r\n\r\n"
        + "予約を変更したいです".encode("iso-2022-jp"), "予約を変更したいです"),
    "HTML-only with the charset in a meta tag": (
        HEAD + b"Content-Type: text/html\r\n\r\n<html><head><meta charset=\"windows-1252\">"
        b"</head><body><p>Caf\xe9 at 9?</p></body></html>", "Café at 9?"),
    "boundary that differs only by a suffix": (
        HEAD + b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b'--b\r\nContent-Type: multipart/alternative; boundary="b-alt"\r\n\r\n--b-alt\r\n'
        b"Content-Type: text/plain\r\n\r\nsimilar boundaries\r\n--b-alt--\r\n--b--\r\n",
        "similar boundaries"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_staff_receive_the_text(name):
    raw, expected = CASES[name]
    result = inspect_bytes(CLASSIFIER, raw)
    assert result["text"].strip() == expected, name
    assert result["attachments"] == [], name


@pytest.mark.parametrize("name", ["unquoted boundary with '=' (older Outlook)",
                                  "UTF-8 body labelled GB2312"])
async def test_staff_copy_over_smtp(services, gateway, name):
    add_patient(services)
    raw, expected = CASES[name]
    reply = await smtp_send(gateway.inbound_port, "ana@example.com",
                            ["portal@portal.example.org"],
                            raw.replace(b"Subject: cita", b"Subject: appointment"))
    assert reply[:2] == ("DATA", 250)
    path = (await wait_for_mail(services.cfg.maildir_root, "frontdesk@practice.example.org"))[0]
    staff = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert expected in staff.get_content()
    assert staff["X-Portal-Attachments-Removed"] == "0"
