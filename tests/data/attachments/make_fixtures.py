"""Regenerate the .eml fixtures for tests/test_strip.py.

    python tests/data/attachments/make_fixtures.py

Every binary is built here from first principles (a valid PDF with a correct
xref table, a PNG with real CRCs, a GIF, a ZIP, a TNEF stream), so the files
are real and the tests can recompute their SHA-256 from these functions.
Output is deterministic (fixed boundaries, fixed ZIP timestamps).
"""

from __future__ import annotations

import base64
import binascii
import io
import struct
import zipfile
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent


# --------------------------------------------------------------- binaries

def pdf_bytes(marker: str) -> bytes:
    """A one-page PDF showing *marker* (ASCII)."""
    stream = f"BT /F1 12 Tf 72 720 Td ({marker}) Tj ET".encode()
    objs = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for num, body in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % num + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objs) + 1, xref)
    return bytes(out)


def png_bytes(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A solid-colour RGB PNG."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)
    row = b"\x00" + bytes(rgb) * width
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(row * height, 9)) + chunk(b"IEND", b""))


def gif_bytes() -> bytes:
    """A 1x1 GIF89a."""
    return (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\x00\x00\x00\x00\x00"
            b"!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00"
            b"\x00\x02\x02D\x01\x00;")


def zip_bytes(name: str, content: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        info = zipfile.ZipInfo(name, date_time=(2024, 1, 2, 3, 4, 6))
        info.compress_type = zipfile.ZIP_DEFLATED
        zf.writestr(info, content)
    return buf.getvalue()


def tnef_bytes() -> bytes:
    """A minimal TNEF stream (winmail.dat) carrying one attached file."""
    def attr(level: int, attr_id: int, data: bytes) -> bytes:
        return (struct.pack("<BII", level, attr_id, len(data)) + data
                + struct.pack("<H", sum(data) & 0xFFFF))
    return b"".join([
        struct.pack("<IH", 0x223E9F78, 0x0001),
        attr(1, 0x00089006, struct.pack("<I", 0x00010000)),   # attTnefVersion
        attr(1, 0x00069007, struct.pack("<II", 1252, 0)),     # attOemCodepage
        attr(1, 0x00078008, b"IPM.Microsoft Mail.Note\x00"),  # attMessageClass
        attr(2, 0x00069002, struct.pack("<HIIHH", 1, 0xFFFFFFFF, 0, 1, 0)),  # attAttachRenddata
        attr(2, 0x00018010, b"blood-pressure-log.doc\x00"),  # attAttachTitle
        attr(2, 0x0006800F, b"TNEF-ATTACHED-DOC: systolic 142 diastolic 91\x00" * 4),
    ])


def yenc_encode(data: bytes, name: str, line_len: int = 128) -> bytes:
    lines, line = [], bytearray()
    for i, byte in enumerate(data):
        o = (byte + 42) & 0xFF
        edge = not line or i == len(data) - 1 or len(line) >= line_len - 1
        if o in (0x00, 0x0A, 0x0D, 0x3D) or (edge and o in (0x09, 0x20, 0x2E)):
            line += b"=" + bytes([(o + 64) & 0xFF])
        else:
            line.append(o)
        if len(line) >= line_len:
            lines.append(bytes(line))
            line = bytearray()
    if line:
        lines.append(bytes(line))
    crc = zlib.crc32(data) & 0xFFFFFFFF
    head = b"=ybegin line=%d size=%d name=%s" % (line_len, len(data), name.encode())
    tail = b"=yend size=%d crc32=%08x" % (len(data), crc)
    return b"\n".join([head, *lines, tail]) + b"\n"


def uu_encode(data: bytes, name: str) -> str:
    lines = [f"begin 644 {name}"]
    for i in range(0, len(data), 45):
        lines.append(binascii.b2a_uu(data[i:i + 45], backtick=True).decode().rstrip("\n"))
    lines += ["`", "end"]
    return "\n".join(lines) + "\n"


def b64(data: bytes) -> str:
    return base64.encodebytes(data).decode("ascii")


# ------------------------------------------------------------ the payloads

PDF_REPORT = pdf_bytes("PDF-MARKER-LABREPORT Potassium 4.1 mmol/L")
PDF_RESULTAT = pdf_bytes("PDF-MARKER-RESULTAT Glucose 5.4 mmol/L")
PDF_AS_TEXT = pdf_bytes("PDF-MARKER-DISGUISED Cholesterol 190 mg/dL")
PDF_NESTED = pdf_bytes("PDF-MARKER-NESTED Insurance card front")
PNG_INLINE = png_bytes(4, 3, (200, 30, 30))
PNG_ROENTGEN = png_bytes(5, 5, (30, 200, 30))
PNG_DATA_URI = png_bytes(2, 2, (30, 30, 200))
PNG_YENC = png_bytes(16, 16, (250, 250, 10))
GIF_NESTED = gif_bytes()
ZIP_FORWARDED = zip_bytes("discharge-summary.txt", b"ZIP-MARKER-FORWARDED discharge summary\n" * 20)
ZIP_UU = zip_bytes("xray-notes.txt", b"UU-MARKER-XRAY notes on the chest film\n" * 20)
TNEF = tnef_bytes()
CALENDAR = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Example//Cal//EN\r\nMETHOD:REQUEST\r\n"
            "BEGIN:VEVENT\r\nUID:CAL-MARKER-20240305@example.org\r\nDTSTART:20240305T150000Z\r\n"
            "DTEND:20240305T153000Z\r\nSUMMARY:Follow-up visit CAL-MARKER\r\nEND:VEVENT\r\n"
            "END:VCALENDAR\r\n").encode()
VCARD = ("BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Maria VCARD-MARKER Lopez\r\nN:Lopez;Maria;;;\r\n"
         "TEL;TYPE=CELL:+1-555-0100\r\nEND:VCARD\r\n").encode()
CSV = ("date,systolic,diastolic,note\r\n2024-03-01,142,91,CSV-MARKER morning\r\n"
       "2024-03-02,138,88,CSV-MARKER evening\r\n2024-03-03,135,85,CSV-MARKER morning\r\n").encode()
TXT_ATTACHED = b"TXT-MARKER-ATTACHED my medication list: lisinopril 10mg\n"

HEAD = ("From: Pat Patient <pat@example.org>\nTo: portal@clinic.example.org\n"
        "Date: Tue, 05 Mar 2024 10:00:00 -0800\nMIME-Version: 1.0\n")


def eml(subject: str, msgid: str, body: str) -> str:
    return HEAD + f"Subject: {subject}\nMessage-ID: <{msgid}@example.org>\n" + body


def _mixed(boundary: str, *parts: str, subtype: str = "mixed", extra: str = "") -> str:
    out = f'Content-Type: multipart/{subtype}; boundary="{boundary}"{extra}\n\n'
    out += "This is a multi-part message in MIME format.\n"
    for part in parts:
        out += f"\n--{boundary}\n{part}"
    return out + f"\n--{boundary}--\n"


TEXT = 'Content-Type: text/plain; charset="utf-8"\nContent-Transfer-Encoding: 7bit\n\n'


def _b64_part(headers: str, data: bytes) -> str:
    return headers + "Content-Transfer-Encoding: base64\n\n" + b64(data)


def _attachment_fixtures(f: dict) -> None:
    f["pdf_attachment.eml"] = eml("Lab report", "pdf1", _mixed(
        "==b-pdf==",
        TEXT + "Dear Dr. Smith,\n\nplease see my lab report from the county lab.\n\nPat\n",
        _b64_part('Content-Type: application/pdf; name="lab-report.pdf"\n'
                  'Content-Disposition: attachment; filename="lab-report.pdf"\n', PDF_REPORT)))
    html_cid = ('<html><body><p>Here is a photo of the <b>rash</b> on my arm.</p>'
                '<p><img src="cid:rash-photo@example.org" alt="rash"></p>'
                '<p>It started on Monday.</p></body></html>\n')
    f["inline_image.eml"] = eml("Rash photo", "img1", _mixed(
        "==b-rel==",
        _mixed("==b-alt==",
               TEXT + "Here is a photo of the rash on my arm.\n\nIt started on Monday.\n",
               'Content-Type: text/html; charset="utf-8"\n\n' + html_cid,
               subtype="alternative"),
        _b64_part('Content-Type: image/png; name="image001.png"\n'
                  'Content-Disposition: inline; filename="image001.png"\n'
                  'Content-ID: <rash-photo@example.org>\n', PNG_INLINE),
        subtype="related", extra='; type="multipart/alternative"'))
    inner = (
        "From: County Hospital <records@hospital.example.net>\nTo: pat@example.org\n"
        "Subject: Your discharge papers\nDate: Mon, 04 Mar 2024 09:00:00 -0800\n"
        "Message-ID: <inner-fwd@hospital.example.net>\nMIME-Version: 1.0\n" + _mixed(
            "==b-inner==",
            TEXT + "FWD-INNER-TEXT Please find your discharge summary attached.\n",
            _b64_part('Content-Type: application/zip; name="discharge.zip"\n'
                      'Content-Disposition: attachment; filename="discharge.zip"\n',
                      ZIP_FORWARDED)))
    f["forwarded.eml"] = eml("Fwd: Your discharge papers", "fwd1", _mixed(
        "==b-fwd==",
        TEXT + "Forwarding the hospital's mail, the papers are inside.\n",
        'Content-Type: message/rfc822\nContent-Disposition: inline\n\n' + inner))

def _text_fixtures(f: dict) -> None:
    f["tnef.eml"] = eml("Blood pressure log", "tnef1", _mixed(
        "==b-tnef==",
        TEXT + "My blood pressure log is attached (sent from Outlook).\n",
        _b64_part('Content-Type: application/ms-tnef; name="winmail.dat"\n'
                  'Content-Disposition: attachment; filename="winmail.dat"\n', TNEF)))
    f["uuencode.eml"] = eml("X-ray notes", "uu1",
        TEXT + "Hello,\n\nmy x-ray notes are below.\n\n" + uu_encode(ZIP_UU, "xray-notes.zip")
        + "\nThank you, and see you on Friday.\n")
    f["yenc.eml"] = (eml("Scan", "yenc1",
        'Content-Type: text/plain; charset="iso-8859-1"\nContent-Transfer-Encoding: 8bit\n\n'
        "Good morning,\n\nthe scan of my insurance card:\n\n").encode("ascii")
        + yenc_encode(PNG_YENC, "card.png")
        + b"\nBest regards,\nPat\n")
    f["calendar.eml"] = eml("Appointment", "cal1", _mixed(
        "==b-cal==",
        TEXT + "Can we move my follow-up visit to this slot?\n",
        'Content-Type: text/calendar; charset="utf-8"; method=REQUEST\n'
        'Content-Transfer-Encoding: 7bit\n\n' + CALENDAR.decode()))
    f["vcard.eml"] = eml("My daughter's details", "vcf1", _mixed(
        "==b-vcf==",
        TEXT + "My daughter is my emergency contact, her card is attached.\n",
        'Content-Type: text/vcard; charset="utf-8"\nContent-Transfer-Encoding: 7bit\n\n'
        + VCARD.decode()))
    f["csv_inline.eml"] = eml("BP readings", "csv1", _mixed(
        "==b-csv==",
        TEXT + "My readings for the last three days:\n",
        'Content-Type: text/csv; charset="utf-8"\nContent-Disposition: inline\n'
        'Content-Transfer-Encoding: 7bit\n\n' + CSV.decode()))
    f["pdf_as_text.eml"] = eml("Results", "pdftxt1", _mixed(
        "==b-pdftxt==",
        TEXT + "Here are my cholesterol results.\n",
        _b64_part('Content-Type: text/plain; charset="us-ascii"\n', PDF_AS_TEXT)))

def _name_and_html_fixtures(f: dict) -> None:
    f["rfc2231_filename.eml"] = eml("Resultat", "rfc2231", _mixed(
        "==b-2231==",
        TEXT + "Voici mon résultat de glycémie.\n",
        _b64_part("Content-Type: application/pdf;\n name*=UTF-8''r%C3%A9sultat.pdf\n"
                  "Content-Disposition: attachment;\n filename*=UTF-8''r%C3%A9sultat.pdf\n",
                  PDF_RESULTAT)))
    f["rfc2047_filename.eml"] = eml("Roentgen", "rfc2047", _mixed(
        "==b-2047==",
        TEXT + "Anbei das Röntgenbild.\n",
        _b64_part('Content-Type: image/png;\n name="=?UTF-8?B?UsO2bnRnZW4gTcOkcnoucG5n?="\n'
                  'Content-Disposition: attachment;\n'
                  ' filename="=?UTF-8?B?UsO2bnRnZW4gTcOkcnoucG5n?="\n', PNG_ROENTGEN)))
    data_uri = "data:image/png;base64," + base64.b64encode(PNG_DATA_URI).decode()
    f["html_only.eml"] = eml("Swelling", "html1",
        'Content-Type: text/html; charset="utf-8"\nContent-Transfer-Encoding: quoted-printable\n\n'
        + _qp('<html><head><style>p { margin: 0 }</style></head><body>'
              '<p>Dear doctor,</p><p>my ankle is <i>still</i> swollen.<br>Photo:</p>'
              f'<p><img src="{data_uri}" alt="ankle"></p>'
              '<ul><li>pain 4/10</li><li>since Sunday</li></ul>'
              '<p><img src="https://mail-tracker.example.net/t/open/pixel-7731.gif" width="1"></p>'
              '<p>See <a href="https://www.example.org/ankle">this page</a>.</p>'
              '<script>alert("x")</script><p>Pat</p></body></html>'))

def _nested_fixture(f: dict) -> None:
    f["nested.eml"] = eml("Insurance", "nest1", _mixed(
        "==b-outer==",
        _mixed("==b-alt2==",
               TEXT + "NESTED-TEXT-1 Here is my new insurance card.\n",
               _mixed("==b-rel2==",
                      'Content-Type: text/html; charset="utf-8"\n\n'
                      '<p>NESTED-TEXT-1 Here is my new insurance card.</p><img src="cid:logo1">\n',
                      _b64_part('Content-Type: image/gif\nContent-ID: <logo1>\n', GIF_NESTED),
                      subtype="related"),
               subtype="alternative"),
        _mixed("==b-inner2==",
               _b64_part('Content-Type: application/pdf\n'
                         'Content-Disposition: attachment; filename="card.pdf"\n', PDF_NESTED),
               _b64_part('Content-Type: text/plain; charset="utf-8"\n'
                         'Content-Disposition: attachment; filename="meds.txt"\n', TXT_ATTACHED)),
        TEXT + "NESTED-TEXT-2 Thanks for updating my file.\n"))


def fixtures() -> dict[str, bytes]:
    """File name -> exact bytes of every fixture."""
    f: dict[str, str | bytes] = {}
    for build in (_attachment_fixtures, _text_fixtures, _name_and_html_fixtures,
                  _nested_fixture):
        build(f)
    return {name: (v if isinstance(v, bytes) else v.encode("utf-8")) for name, v in f.items()}


def _qp(text: str) -> str:
    import quopri
    return quopri.encodestring(text.encode("utf-8")).decode("ascii") + "\n"


def main() -> None:
    for name, data in fixtures().items():
        (HERE / name).write_bytes(data)
        print("wrote", name, len(data), "bytes")


if __name__ == "__main__":
    main()
