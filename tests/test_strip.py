"""Attachment removal and text extraction (gateway.content.strip)."""

from __future__ import annotations

import base64
import email
import email.message
import email.policy
import hashlib
import importlib.util
import os
import random
import re
from pathlib import Path

import pytest

from gateway.content.strip import RemovedItem, Stripped, strip_message

DATA = Path(__file__).parent / "data" / "attachments"
EMPTY_SHA = hashlib.sha256(b"").hexdigest()


def _load_fixture_module():
    spec = importlib.util.spec_from_file_location("make_fixtures", DATA / "make_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


mf = _load_fixture_module()


def parse(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)


def strip_file(name: str) -> Stripped:
    return strip_message(parse((DATA / name).read_bytes()))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def assert_no_leak(text: str, data: bytes, *extra: str) -> None:
    """Neither the raw bytes nor their base64 form show up in *text*."""
    for marker in extra:
        assert marker not in text
    for run in re.findall(rb"[ -~]{12,}", data):
        assert run.decode("ascii") not in text
    encoded = base64.b64encode(data).decode("ascii")
    for i in range(0, max(len(encoded) - 20, 1), 20):
        assert encoded[i:i + 20] not in text
    for line in base64.encodebytes(data).decode("ascii").splitlines():
        if len(line) >= 8:
            assert line not in text


def summary(item: RemovedItem) -> tuple:
    return (item.reason, item.filename, item.declared_type, item.sniffed_type,
            item.size, item.sha256)


def expect(reason, filename, declared, sniffed, data) -> tuple:
    return (reason, filename, declared, sniffed, len(data), sha(data))


# ------------------------------------------------------------- fixtures

def test_fixtures_are_up_to_date():
    for name, data in mf.fixtures().items():
        assert (DATA / name).read_bytes() == data, f"run make_fixtures.py ({name})"


CASES = {
    "pdf_attachment.eml": (
        [expect("attachment", "lab-report.pdf", "application/pdf", "application/pdf",
                mf.PDF_REPORT)],
        ["Dear Dr. Smith,", "please see my lab report from the county lab.", "Pat"],
        [mf.PDF_REPORT], ["PDF-MARKER", "Potassium"]),
    "inline_image.eml": (
        [expect("inline-image", "image001.png", "image/png", "image/png", mf.PNG_INLINE)],
        ["Here is a photo of the rash on my arm.", "It started on Monday."],
        [mf.PNG_INLINE], ["IHDR", "cid:"]),
    "tnef.eml": (
        [expect("tnef", "winmail.dat", "application/ms-tnef", "application/vnd.ms-tnef",
                mf.TNEF)],
        ["My blood pressure log is attached (sent from Outlook)."],
        [mf.TNEF], ["TNEF-ATTACHED-DOC", "blood-pressure-log.doc"]),
    "uuencode.eml": (
        [expect("uuencoded-block", "xray-notes.zip", "application/zip", "application/zip",
                mf.ZIP_UU)],
        ["Hello,\n\nmy x-ray notes are below.", "Thank you, and see you on Friday."],
        [mf.ZIP_UU], ["begin 644", "xray-notes", "\nend"]
        + [line for line in mf.uu_encode(mf.ZIP_UU, "x").splitlines()[1:-2]]),
    "yenc.eml": (
        [expect("yenc-block", "card.png", "image/png", "image/png", mf.PNG_YENC)],
        ["Good morning,\n\nthe scan of my insurance card:", "Best regards,\nPat"],
        [mf.PNG_YENC], ["=ybegin", "=yend", "card.png"]
        + [ln.decode("latin-1") for ln in mf.yenc_encode(mf.PNG_YENC, "c").split(b"\n")[1:-2]]),
    "calendar.eml": (
        [expect("text-part-not-allowed", None, "text/calendar", "text/calendar", mf.CALENDAR)],
        ["Can we move my follow-up visit to this slot?"],
        [mf.CALENDAR], ["VCALENDAR", "CAL-MARKER"]),
    "vcard.eml": (
        [expect("text-part-not-allowed", None, "text/vcard", "text/vcard", mf.VCARD)],
        ["My daughter is my emergency contact, her card is attached."],
        [mf.VCARD], ["VCARD", "555-0100"]),
    "csv_inline.eml": (
        [expect("text-part-not-allowed", None, "text/csv", "text/csv", mf.CSV)],
        ["My readings for the last three days:"],
        [mf.CSV], ["CSV-MARKER", "systolic"]),
    "pdf_as_text.eml": (
        [expect("binary-in-text-part", None, "text/plain", "application/pdf", mf.PDF_AS_TEXT)],
        ["Here are my cholesterol results."],
        [mf.PDF_AS_TEXT], ["PDF-MARKER", "%PDF"]),
    "rfc2231_filename.eml": (
        [expect("attachment", "résultat.pdf", "application/pdf", "application/pdf",
                mf.PDF_RESULTAT)],
        ["Voici mon résultat de glycémie."],
        [mf.PDF_RESULTAT], ["PDF-MARKER"]),
    "rfc2047_filename.eml": (
        [expect("attachment", "Röntgen März.png", "image/png", "image/png", mf.PNG_ROENTGEN)],
        ["Anbei das Röntgenbild."],
        [mf.PNG_ROENTGEN], ["IHDR", "=?UTF-8?"]),
    "html_only.eml": (
        [expect("data-uri", None, "image/png", "image/png", mf.PNG_DATA_URI),
         ("remote-image", "pixel-7731.gif", "image/gif", "application/x-empty", 0, EMPTY_SHA)],
        ["Dear doctor,\n\nmy ankle is still swollen.\nPhoto:", "- pain 4/10\n- since Sunday",
         "See this page.", "Pat"],
        [mf.PNG_DATA_URI], ["data:", "mail-tracker", "https://", "alert", "<p>", "margin"]),
    "nested.eml": (
        [expect("inline-image", None, "image/gif", "image/gif", mf.GIF_NESTED),
         expect("attachment", "card.pdf", "application/pdf", "application/pdf", mf.PDF_NESTED),
         expect("attachment", "meds.txt", "text/plain", "text/plain", mf.TXT_ATTACHED)],
        ["NESTED-TEXT-1 Here is my new insurance card.\n\n"
         "NESTED-TEXT-2 Thanks for updating my file."],
        [mf.PDF_NESTED, mf.TXT_ATTACHED, mf.GIF_NESTED],
        ["TXT-MARKER", "lisinopril", "PDF-MARKER", "<p>"]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_fixture(name):
    items, kept, payloads, markers = CASES[name]
    result = strip_file(name)
    assert [summary(i) for i in result.removed] == items
    for fragment in kept:
        assert fragment in result.text
    for data in payloads:
        assert_no_leak(result.text, data, *markers)


def test_expected_text_exactly():
    assert strip_file("pdf_attachment.eml").text == (
        "Dear Dr. Smith,\n\nplease see my lab report from the county lab.\n\nPat")
    assert strip_file("uuencode.eml").text == (
        "Hello,\n\nmy x-ray notes are below.\n\nThank you, and see you on Friday.")


def test_html_only_flag():
    assert strip_file("html_only.eml").html_only is True
    assert strip_file("inline_image.eml").html_only is False  # plain alternative used
    assert strip_file("nested.eml").html_only is False


def test_forwarded_message_removed_as_one_item():
    raw = (DATA / "forwarded.eml").read_bytes()
    msg = parse(raw)
    result = strip_message(msg)
    assert result.text == "Forwarding the hospital's mail, the papers are inside."
    assert len(result.removed) == 1
    item = result.removed[0]
    assert (item.reason, item.filename, item.declared_type, item.sniffed_type) == (
        "forwarded-message", None, "message/rfc822", "message/rfc822")
    inner = [p for p in msg.walk() if p.get_content_type() == "message/rfc822"][0]
    inner_bytes = inner.get_payload(0).as_bytes()
    assert (item.size, item.sha256) == (len(inner_bytes), sha(inner_bytes))
    assert_no_leak(result.text, mf.ZIP_FORWARDED, "FWD-INNER-TEXT", "discharge",
                   "County Hospital", "ZIP-MARKER")


def test_text_attachment_removed_even_if_text_plain():
    result = strip_file("nested.eml")
    meds = [i for i in result.removed if i.filename == "meds.txt"]
    assert meds and meds[0].reason == "attachment"
    assert "medication" not in result.text


# ------------------------------------------------------- built in-line

def _mime(body: str, ctype: str = 'text/plain; charset="utf-8"', extra: str = "") -> bytes:
    return (f"From: a@example.org\nTo: b@example.org\nSubject: t\nMIME-Version: 1.0\n"
            f"Content-Type: {ctype}\n{extra}\n{body}").encode("utf-8", "surrogateescape")


def test_alternative_prefers_plain_but_falls_back_to_html_when_plain_blank():
    body = ("--b\nContent-Type: text/plain\n\n   \n--b\nContent-Type: text/html\n\n"
            "<p>Only <b>HTML</b> here</p>\n--b--\n")
    result = strip_message(parse(_mime(body, 'multipart/alternative; boundary="b"')))
    assert result.text == "Only HTML here" and result.html_only
    body = ("--b\nContent-Type: text/html\n\n<p>rich</p>\n--b\nContent-Type: text/plain\n\n"
            "plain words\n--b--\n")
    result = strip_message(parse(_mime(body, 'multipart/alternative; boundary="b"')))
    assert result.text == "plain words" and not result.html_only


def test_data_uri_in_unchosen_html_alternative_is_still_logged():
    uri = "data:image/png;base64," + base64.b64encode(mf.PNG_DATA_URI).decode()
    body = (f"--b\nContent-Type: text/plain\n\nsee photo\n--b\nContent-Type: text/html\n\n"
            f'<p>see photo</p><img src="{uri}">\n--b--\n')
    result = strip_message(parse(_mime(body, 'multipart/alternative; boundary="b"')))
    assert result.text == "see photo"
    assert [summary(i) for i in result.removed] == [
        expect("data-uri", None, "image/png", "image/png", mf.PNG_DATA_URI)]


def test_html_conversion_shape():
    html = ("<html><head><title>T</title><style>.x{}</style></head><body>"
            "<h1>Question</h1><p>Line one<br>Line two</p>"
            "<ol><li>first</li><li>second</li></ol><table><tr><td>A</td><td>B</td></tr></table>"
            "<blockquote><p>quoted text</p></blockquote><p>&lt;ok&gt; &amp; caf&eacute;</p>"
            "<script>var secret = 1;</script><a href='https://x.example.org/y'>the link</a>"
            "</body></html>")
    result = strip_message(parse(_mime(html, "text/html")))
    assert result.text == ("Question\n\nLine one\nLine two\n\n1. first\n2. second\n\nA  B\n\n"
                           "> quoted text\n\n<ok> & café\n\nthe link")
    assert result.html_only and result.removed == ()


def test_yenc_in_utf8_part_roundtrips_exactly():
    data = bytes(range(256)) * 3
    body = (b"Hi\n\n" + mf.yenc_encode(data, "all.bin") + b"\nbye\n")
    raw = _mime("", extra="Content-Transfer-Encoding: 8bit\n") + body
    result = strip_message(parse(raw))
    assert result.text == "Hi\n\nbye"
    assert [(i.reason, i.filename, i.size, i.sha256) for i in result.removed] == [
        ("yenc-block", "all.bin", len(data), sha(data))]


def test_uuencode_base64_variant_and_missing_end():
    payload = mf.PDF_REPORT
    b64 = base64.encodebytes(payload).decode()
    body = f"top\nbegin-base64 644 r.pdf\n{b64}====\nmiddle\n" + mf.uu_encode(
        mf.ZIP_UU, "z.zip").replace("`\nend\n", "") + "tail words\n"
    result = strip_message(parse(_mime(body)))
    assert result.text == "top\nmiddle\ntail words"
    assert [(i.reason, i.filename, i.sniffed_type, i.sha256) for i in result.removed] == [
        ("uuencoded-block", "r.pdf", "application/pdf", sha(payload)),
        ("uuencoded-block", "z.zip", "application/zip", sha(mf.ZIP_UU))]


def test_pasted_base64_and_data_uri_in_plain_text():
    b64 = base64.encodebytes(mf.PDF_NESTED).decode()
    uri = "data:image/gif;base64," + base64.b64encode(mf.GIF_NESTED).decode()
    body = f"Hello\n{b64}\nand a picture {uri} end\n"
    result = strip_message(parse(_mime(body)))
    assert result.text == "Hello\n\nand a picture  end"
    assert [(i.reason, i.sniffed_type, i.sha256) for i in result.removed] == [
        ("data-uri", "image/gif", sha(mf.GIF_NESTED)),
        ("base64-block", "application/pdf", sha(mf.PDF_NESTED))]
    assert_no_leak(result.text, mf.PDF_NESTED)


def test_blocks_hidden_in_html_are_cut():
    b64 = base64.encodebytes(mf.PDF_NESTED).decode()
    uri = "data:application/pdf;base64," + base64.b64encode(mf.PDF_REPORT).decode()
    html = (f"<p>Intro</p>\n<p>{b64}</p>\n" + mf.uu_encode(mf.ZIP_UU, "u.zip")
            + f'<p><a href="{uri}">my report</a></p><div style="background:url(\'//cdn.example.org/bg.jpg\')">x</div>')
    result = strip_message(parse(_mime(html, "text/html")))
    assert result.text == "Intro\n\nmy report\n\nx"
    assert sorted((i.reason, i.sha256) for i in result.removed) == sorted([
        ("base64-block", sha(mf.PDF_NESTED)), ("uuencoded-block", sha(mf.ZIP_UU)),
        ("data-uri", sha(mf.PDF_REPORT)), ("remote-image", EMPTY_SHA)])
    for data in (mf.PDF_NESTED, mf.ZIP_UU, mf.PDF_REPORT):
        assert_no_leak(result.text, data)


def test_unknown_disposition_counts_as_attachment():
    body = ("--b\nContent-Type: text/plain\n\nhi\n--b\nContent-Type: text/plain\n"
            "Content-Disposition: attachement\n\nSECRET NOTES\n--b--\n")
    result = strip_message(parse(_mime(body, 'multipart/mixed; boundary="b"')))
    assert result.text == "hi"
    assert [i.reason for i in result.removed] == ["attachment"]


def test_prose_is_not_mistaken_for_blocks():
    body = ("begin 644 is not a block without data\nThe data: shows improvement.\n"
            "=ybeginning? no.\nTHANKS DOCTOR\nend\n")
    result = strip_message(parse(_mime(body)))
    assert result.removed == ()
    assert "The data: shows improvement." in result.text
    assert "THANKS DOCTOR" in result.text


def test_tnef_detected_by_bytes_and_by_name():
    tnef = base64.encodebytes(mf.TNEF).decode()
    body = (f"--b\nContent-Type: text/plain\n\nhi\n--b\nContent-Type: application/octet-stream\n"
            f"Content-Transfer-Encoding: base64\n\n{tnef}--b\n"
            f"Content-Type: application/octet-stream; name=WINMAIL.DAT\n\nxx\n--b--\n")
    result = strip_message(parse(_mime(body, 'multipart/mixed; boundary="b"')))
    assert [i.reason for i in result.removed] == ["tnef", "tnef"]
    assert result.text == "hi"


def test_whole_message_is_an_attachment():
    pdf = base64.encodebytes(mf.PDF_REPORT).decode()
    result = strip_message(parse(_mime(pdf, "application/pdf",
                                       "Content-Transfer-Encoding: base64\n")))
    assert result.text == ""
    assert [summary(i) for i in result.removed] == [
        expect("non-text-part", None, "application/pdf", "application/pdf", mf.PDF_REPORT)]


def test_message_partial_and_delivery_status():
    body = ("--b\nContent-Type: text/plain\n\nvisible\n--b\n"
            'Content-Type: message/partial; id="x@y"; number=1; total=2\n\n'
            "Subject: part\n\nPARTIAL-SECRET\n--b\nContent-Type: message/delivery-status\n\n"
            "Reporting-MTA: dns; mx.example.org\n\nFinal-Recipient: rfc822; a@example.org\n"
            "Action: failed\n--b--\n")
    result = strip_message(parse(_mime(body, 'multipart/mixed; boundary="b"')))
    assert result.text == "visible"
    assert [i.reason for i in result.removed] == ["partial-message", "non-text-part"]


def test_malformed_inputs_degrade_without_leaking():
    pdf = base64.encodebytes(mf.PDF_REPORT).decode()
    cases = [
        # boundary never appears: cannot be split, so nothing is shown
        _mime(f"--zzz\nContent-Type: application/pdf\n\n{pdf}", 'multipart/mixed; boundary="b"'),
        # no boundary parameter at all
        _mime(f"--b\nContent-Type: application/pdf\n\n{pdf}--b--\n", "multipart/mixed"),
    ]
    for raw in cases:
        result = strip_message(parse(raw))
        assert result.text == ""
        assert result.removed[0].reason == "malformed-multipart"
        assert_no_leak(result.text, mf.PDF_REPORT)


def test_lenient_charsets_and_bad_base64():
    """A wrong, unknown or absurd charset label still gives staff the words."""
    for charset in ("x-unknown-charset", "base64", "utf-7", "utf-16", "", "iso-8859-1"):
        raw = _mime("", f'text/plain; charset="{charset}"',
                    "Content-Transfer-Encoding: 8bit\n") + "Grüße\n".encode("latin-1")
        result = strip_message(parse(raw))
        assert result.text == "Grüße", charset
        assert result.removed == ()
    for charset, text in (("utf-16", "Grüße"), ("utf-8", "Grüße — ¿bien?"),
                          ("gb2312", "你好"), ("iso-8859-1", "“quoted”")):
        data = (text.encode(charset) if charset != "iso-8859-1"
                else text.encode("cp1252"))  # cp1252 quotes under a Latin-1 label
        raw = _mime("", f'text/plain; charset="{charset}"',
                    "Content-Transfer-Encoding: 8bit\n") + data
        assert strip_message(parse(raw)).text == text, charset
    raw = _mime("SGVsbG8gZG9jdG9y!!!===\n", extra="Content-Transfer-Encoding: base64\n")
    result = strip_message(parse(raw))
    assert result.text.startswith("Hello doctor")
    assert result.defects  # the email package noticed


def test_filename_is_cleaned_for_logging():
    body = ('--b\nContent-Type: application/pdf\nContent-Disposition: attachment; '
            'filename="=?UTF-8?Q?evil=0D=0ABcc=3A_x.pdf?="\n\nxx\n--b--\n')
    result = strip_message(parse(_mime(body, 'multipart/mixed; boundary="b"')))
    assert result.removed[0].filename == "evilBcc: x.pdf"


def test_walk_failure_is_contained():
    leaf = email.message.EmailMessage()
    leaf.set_content("deep text")
    node = leaf
    for _ in range(5000):
        parent = email.message.EmailMessage()
        parent["Content-Type"] = 'multipart/mixed; boundary="x"'
        parent.set_payload([node])
        node = parent
    result = strip_message(node)
    assert isinstance(result, Stripped)
    assert "malformed-message" in [i.reason for i in result.removed]
    assert any(d.startswith("StripError:") for d in result.defects)


# ------------------------------------------------------------ robustness

def _stdlib_email_data() -> list[Path]:
    import test.test_email
    folder = Path(os.path.dirname(test.test_email.__file__)) / "data"
    return sorted(p for p in folder.iterdir() if p.is_file())


def test_python_email_test_messages_do_not_raise():
    files = _stdlib_email_data()
    assert len(files) > 30
    for path in files:
        result = strip_message(parse(path.read_bytes()))
        assert isinstance(result, Stripped), path.name
        assert isinstance(result.text, str)
        for item in result.removed:
            assert re.fullmatch(r"[0-9a-f]{64}", item.sha256) and item.size >= 0


def parse_any(raw: bytes) -> email.message.Message:
    """The email package itself can raise while parsing hostile headers
    (IndexError in _header_value_parser); the caller then falls back to the
    compat32 policy, which strip_message also accepts."""
    try:
        return parse(raw)
    except Exception:
        return email.message_from_bytes(raw, policy=email.policy.compat32)


def _mangle(rng: random.Random, raw: bytes) -> bytes:
    data = bytearray(raw)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        pos = rng.randrange(len(data) or 1)
        if op == 0 and data:
            data[pos] = rng.randrange(256)
        elif op == 1:
            del data[pos:pos + rng.randint(1, 200)]
        elif op == 2:
            data[pos:pos] = rng.choice([b"\n--", b"boundary=", b"=?utf-8?q?=FF?=", b"\x00",
                                        b"Content-Type: multipart/mixed; boundary=x\n\n--x\n",
                                        b"begin 644 x\nM", b"=ybegin name=a\n", b"data:a/b;base64,"])
        elif op == 3:
            data = data[:pos]
        elif op == 4:
            data[pos:pos] = data[rng.randrange(len(data) or 1):][:300]
        else:
            data = data.replace(b"base64", rng.choice([b"8bit", b"x-uuencode", b"quoted-printable"]))
    return bytes(data)


def test_randomised_mangled_mime_does_not_raise():
    rng = random.Random(20240305)
    seeds = [p.read_bytes() for p in sorted(DATA.glob("*.eml"))]
    seeds += [p.read_bytes() for p in _stdlib_email_data()[:20]]
    for _ in range(400):
        raw = _mangle(rng, rng.choice(seeds))
        result = strip_message(parse_any(raw))
        assert isinstance(result, Stripped) and isinstance(result.text, str)
        assert all(isinstance(i, RemovedItem) for i in result.removed)
    for _ in range(100):
        raw = bytes(rng.randrange(256) for _ in range(rng.randint(0, 3000)))
        result = strip_message(parse_any(raw))
        assert isinstance(result, Stripped)


@pytest.mark.parametrize("first", [
    "BP tonight: 162/104, then 158/101 ten minutes later. Should I take another nifedipine?",
    "IN; the waiting room yesterday I felt dizzy twice, is that normal at 30 weeks?",
    "P1 of my questions: can I take Tylenol? P2: can I fly at 32 weeks?",
    "P3 result from my glucose test says 141, what does that mean?",
    "%! sorry, my keyboard. Can I move my appointment to Friday?",
])
def test_text_that_starts_like_a_weak_file_signature_is_kept(first):
    # libmagic calls these HP-GL, portable bitmaps or PostScript from two printable
    # characters; the patient's words must still reach staff, nothing removed.
    msg = email.message.EmailMessage(policy=email.policy.default)
    msg["From"] = "ana@example.com"
    msg.set_content(first + "\n\nSarah\n")
    result = strip_message(msg)
    assert result.removed == ()
    assert first in result.text


def test_binary_pixmap_disguised_as_text_is_still_removed():
    raw = b"P6\n4 4\n255\n" + bytes(range(48)) * 4
    msg = email.message.EmailMessage(policy=email.policy.default)
    msg.set_content("see below")
    msg.add_alternative(raw, maintype="text", subtype="plain")
    msg = parse(msg.as_bytes())
    result = strip_message(msg)
    assert [r.reason for r in result.removed] == ["binary-in-text-part"]
    assert "see below" in result.text
