"""Large attachments are hashed, sniffed and counted as they stream, never held whole.

The attachment log (file name, declared type, sniffed type, size, SHA-256, reason), the
patient's text and the defects must be exactly those of parsing the whole message, for
regular mail and for every irregular shape that forces the whole parse; and the memory a
20 MB attachment costs while it is parsed and stripped stays a small fraction of it.
"""
from __future__ import annotations

import base64
import hashlib
import os
import tracemalloc
import zlib
from email.message import EmailMessage

import pytest

from gateway.content.bulk import MIN_RUN, cut_runs
from gateway.content.mime import parse_bytes
from gateway.content.strip import strip_message

PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n"


def blob(size: int, head: bytes = PDF, seed: int = 1) -> bytes:
    """Incompressible bytes of `size` starting with a file signature."""
    out, n = bytearray(head), 0
    while len(out) < size:
        out += hashlib.sha256(b"%d-%d" % (seed, n)).digest()
        n += 1
    return bytes(out[:size])


def mail(*attachments, text="Please see the attached lab report.", linesep="\r\n") -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "ana@example.com", "portal@example.org", "labs"
    msg.set_content(text)
    for data, maintype, subtype, name in attachments:
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return msg.as_bytes(policy=msg.policy.clone(linesep=linesep))


def outcome(raw: bytes, cut: bool, reparsed: list | None = None):
    msg, extra = parse_bytes(raw, cut=cut)
    bulk = getattr(msg, "portal_bulk", None)
    if bulk is not None and reparsed is not None:
        whole = bulk.reparse
        bulk.reparse = lambda: reparsed.append(1) or whole()
    s = strip_message(msg)
    return s.text, s.removed, s.html_only, s.defects, [type(d).__name__ for d in msg.defects], extra


def same_as_whole(raw: bytes, streamed_expected: bool = True):
    reparsed: list = []
    streamed, whole = outcome(raw, True, reparsed), outcome(raw, False)
    assert streamed == whole
    assert (not reparsed) == streamed_expected  # summarised, or the whole parse was needed
    return streamed


def test_a_large_pdf_is_logged_exactly_as_the_whole_parse_logs_it():
    data = blob(3_000_000)
    text, removed, *_ = same_as_whole(mail((data, "application", "pdf", "labs.pdf")))
    assert text == "Please see the attached lab report."
    (item,) = removed
    assert (item.filename, item.declared_type, item.sniffed_type, item.size, item.sha256,
            item.reason) == ("labs.pdf", "application/pdf", "application/pdf", len(data),
                             hashlib.sha256(data).hexdigest(), "attachment")


def test_the_skeleton_really_leaves_the_body_out():
    raw = mail((blob(1_000_000), "application", "pdf", "a.pdf"))
    skeleton, bulk = cut_runs(raw)
    assert bulk is not None and len(skeleton) < 10_000
    assert cut_runs(mail())[1] is None  # a short message is parsed as it is


@pytest.mark.parametrize("shape", [
    "two-attachments", "image-inline", "octet-stream", "zip", "lf-line-endings", "tnef",
    "exactly-min-run", "double-padding", "single-padding"])
def test_regular_shapes_are_summarised_identically(shape):
    big = blob(MIN_RUN * 3)
    raw = {
        "two-attachments": lambda: mail((big, "application", "pdf", "a.pdf"),
                                        (blob(MIN_RUN * 2, b"PK\x03\x04", 2), "application",
                                         "zip", "b.zip")),
        "image-inline": lambda: mail((blob(MIN_RUN * 2, b"\x89PNG\r\n\x1a\n"), "image",
                                      "png", None)),
        "octet-stream": lambda: mail((big, "application", "octet-stream", None)),
        "zip": lambda: mail((zlib.compress(os.urandom(50)) + big, "application", "zip",
                             "x.zip")),
        "lf-line-endings": lambda: mail((big, "application", "pdf", "a.pdf"), linesep="\n"),
        "tnef": lambda: mail((blob(MIN_RUN * 2, b"\x78\x9f\x3e\x22"), "application",
                              "octet-stream", "winmail.dat")),
        "exactly-min-run": lambda: mail((blob(MIN_RUN // 4 * 3), "application", "pdf", "m.pdf")),
        "double-padding": lambda: mail((blob(MIN_RUN * 2 + 2), "application", "pdf", "p.pdf")),
        "single-padding": lambda: mail((blob(MIN_RUN * 2 + 3), "application", "pdf", "q.pdf")),
    }[shape]()
    same_as_whole(raw)


def _b64_part(body: bytes, cte: str = "base64", ctype: str = "application/pdf",
              extra_headers: str = "", name: str = '; name="f.bin"') -> bytes:
    return (b"MIME-Version: 1.0\r\nFrom: ana@example.com\r\nSubject: x\r\n"
            b'Content-Type: multipart/mixed; boundary="XX"\r\n\r\n--XX\r\n'
            b"Content-Type: text/plain\r\n\r\nhello doctor\r\n--XX\r\n"
            b"Content-Type: " + ctype.encode() + name.encode() + b"\r\n"
            b"Content-Transfer-Encoding: " + cte.encode() + b"\r\n" + extra_headers.encode()
            + b"\r\n" + body + b"\r\n--XX--\r\n")


def _lines(data: bytes) -> bytes:
    enc = base64.b64encode(data)
    return b"\r\n".join(enc[i:i + 76] for i in range(0, len(enc), 76))


@pytest.mark.parametrize("name,body,kw", [
    ("bad char in the middle", _lines(blob(MIN_RUN * 2))[:-200] + b"!!" + _lines(b"x" * 99), {}),
    ("padding in the middle", _lines(b"ab") + b"\r\n" + _lines(blob(MIN_RUN * 2)), {}),
    ("missing padding", _lines(blob(MIN_RUN * 2 + 2)).rstrip(b"="), {}),
    ("a stray character after", _lines(blob(MIN_RUN * 2)) + b"\r\nA", {}),
    ("odd spelling of base64", _lines(blob(MIN_RUN * 2)), {"cte": "Base64 "}),
    ("two encodings", _lines(blob(MIN_RUN * 2)),
     {"extra_headers": "Content-Transfer-Encoding: 7bit\r\n"}),
    ("quoted-printable", _lines(blob(MIN_RUN * 2)), {"cte": "quoted-printable"}),
    ("7bit", _lines(blob(MIN_RUN * 2)), {"cte": "7bit"}),
    ("base64 text kept", _lines(b"I have a question about my bill. " * 9000),
     {"ctype": "text/plain", "name": ""}),
    ("trailing spaces", _lines(blob(MIN_RUN * 2)).replace(b"\r\n", b" \r\n", 3), {}),
    ("forged marker", b"=PORTALRUN0000000000000000-0=\r\n" + _lines(blob(MIN_RUN * 2)), {}),
    ("form feed", _lines(blob(MIN_RUN * 2)) + b"\r\n\x0c", {}),
])
def test_irregular_bodies_fall_back_to_the_whole_parse(name, body, kw):
    same_as_whole(_b64_part(body, **kw), streamed_expected=False)


def test_a_forwarded_message_holding_a_large_attachment_is_one_item_as_before():
    inner = mail((blob(MIN_RUN * 3), "application", "pdf", "scan.pdf"))
    outer = EmailMessage()
    outer["From"], outer["Subject"] = "ana@example.com", "fwd"
    outer.set_content("see below")
    outer.add_attachment(inner, maintype="message", subtype="rfc822")
    _text, removed, *_ = same_as_whole(outer.as_bytes(), streamed_expected=False)
    assert [i.reason for i in removed] == ["forwarded-message"]


def test_an_attachment_container_holding_a_large_attachment_is_one_item_as_before():
    raw = (b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="A"\r\n\r\n'
           b"--A\r\nContent-Type: text/plain\r\n\r\nhi\r\n--A\r\n"
           b'Content-Type: multipart/mixed; boundary="B"\r\nContent-Disposition: attachment'
           b'\r\n\r\n--B\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: '
           b"base64\r\n\r\n" + _lines(blob(MIN_RUN * 2)) + b"\r\n--B--\r\n--A--\r\n")
    _text, removed, *_ = same_as_whole(raw, streamed_expected=False)
    assert [i.reason for i in removed] == ["attachment"]


def test_a_20_mb_attachment_costs_little_memory_while_parsed_and_stripped():
    """The classic parse holds the lines, the joined text and the decoded bytes (several
    times 20 MB); streamed, the peak is the chunk and the head kept for libmagic."""
    data = blob(20_000_000)
    raw = mail((data, "application", "pdf", "big.pdf"))
    peaks = {}
    for cut in (True, False):
        tracemalloc.start()
        msg, _ = parse_bytes(raw, cut=cut)
        (item,) = strip_message(msg).removed
        peaks[cut] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        del msg
        assert (item.size, item.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert peaks[True] < 8_000_000, peaks
    assert peaks[False] > 40_000_000, peaks  # what it costs without streaming
