"""A gateway mail serialised without building an ``EmailMessage`` tree.

`Notices.build` followed by `notices.as_bytes` makes a message object, lets
``set_content``/``add_alternative`` parse and rewrite its MIME headers several times, and
walks it with the generator.  For the gateway's own mails the result has one fixed shape
(a quoted-printable text part, or a multipart/alternative of a text and an HTML part), so
`serialise` writes those bytes directly, header by header through the same policy
(``notices.OUTBOUND``: its ``header_store_parse`` and ``fold_binary``), the body through
the same quoted-printable encoder.  The result is byte for byte what the message object
would give (tests/test_mail_bytes.py compares the two for every template and language).

Anything outside that shape (a header the caller gives that the library would move, refuse
or count, a text that does not encode) is left to the library: `serialise` returns None
and the caller builds the message object as before.
"""
from __future__ import annotations

import re
from email import quoprimime
from typing import Callable

# Names the library treats specially while building: a caller's header of this name
# would be refused (a second Content-Type), moved into a part (Content-*), or would stop
# MIME-Version from being added.
_RESERVED = ("content-", "mime-version")
_FIXED = frozenset({"from", "to", "subject", "date", "message-id"})
_NLCRE = re.compile(r"\r\n|\r|\n")

_TEXT_HEADERS = {subtype: [("Content-Type", f'text/{subtype}; charset="utf-8"'),
                           ("Content-Transfer-Encoding", "quoted-printable")]
                 for subtype in ("plain", "html")}


def _body(text: str, max_line_length: int) -> str:
    """What ``set_content(text, cte="quoted-printable")`` stores and the generator
    writes (lines joined with the policy's "\\n" line separator)."""
    lines = text.encode("utf-8").splitlines()
    data = quoprimime.body_encode((b"\n".join(lines) + b"\n").decode("latin-1"),
                                  max_line_length)
    return "\n".join(_NLCRE.split(data))


def _header_bytes(policy, headers: list[tuple[str, str]]) -> list[bytes]:
    out = []
    for name, value in headers:
        stored = policy.header_store_parse(name, value)
        out.append(policy.fold_binary(*stored))
    return out


_BOUNDARY = re.compile(r"={15}[0-9]{20}==\Z")  # notices._Generator._make_boundary
_SAMPLE_BOUNDARY = "=" * 15 + "0" * 20 + "=="
_FOLDED: dict[int, tuple[object, bytes, bytes]] = {}  # id(policy) -> (policy, head, tail)


def _multipart_header(policy, mark: str) -> bytes:
    """The folded ``Content-Type: multipart/alternative; boundary=...`` header.  Every
    boundary the gateway makes has the same length and kinds of characters, so it folds
    the same way: folded once for a sample boundary, then only the boundary changes."""
    header = ("Content-Type", f'multipart/alternative; boundary="{mark}"')
    if not _BOUNDARY.match(mark):
        return _header_bytes(policy, [header])[0]
    known = _FOLDED.get(id(policy))
    if known is None or known[0] is not policy:
        sample = _header_bytes(policy, [("Content-Type", "multipart/alternative; "
                                         f'boundary="{_SAMPLE_BOUNDARY}"')])[0]
        head, found, tail = sample.partition(_SAMPLE_BOUNDARY.encode("ascii"))
        if not found or _SAMPLE_BOUNDARY.encode("ascii") in tail:
            return _header_bytes(policy, [header])[0]
        known = _FOLDED[id(policy)] = (policy, head, tail)
    return known[1] + mark.encode("ascii") + known[2]


def usable(headers: dict) -> bool:
    """May the caller's extra HEADERS go through `serialise` (no name the library would
    treat specially, none given twice)?"""
    seen = set()
    for name in headers:
        key = name.lower()
        if key.startswith(_RESERVED) or key in _FIXED or key in seen:
            return False
        seen.add(key)
    return True


def serialise(policy, top: list[tuple[str, str]], text: str, html: str | None,
              trailer: list[tuple[str, str]], boundary: Callable[[], str]) -> bytes:
    """The mail: TOP headers (From, To, Subject, Date, Message-ID, the caller's), the
    MIME headers, TRAILER headers (Content-Language), then the text part, or a
    multipart/alternative of TEXT and HTML with BOUNDARY() as its boundary."""
    limit = policy.max_line_length
    text_body = _body(text, limit)
    if html is None:
        head = _header_bytes(policy, [*top, *_TEXT_HEADERS["plain"],
                                      ("MIME-Version", "1.0"), *trailer])
        return b"".join(head) + b"\n" + text_body.encode("ascii")
    html_body = _body(html, limit)
    mark = boundary()
    parts = [b"".join(_header_bytes(policy, _TEXT_HEADERS["plain"])) + b"\n"
             + text_body.encode("ascii"),
             b"".join(_header_bytes(policy, [*_TEXT_HEADERS["html"],
                                             ("MIME-Version", "1.0")])) + b"\n"
             + html_body.encode("ascii")]
    head = [*_header_bytes(policy, [*top, ("MIME-Version", "1.0")]),
            _multipart_header(policy, mark), *_header_bytes(policy, trailer)]
    line = f"--{mark}".encode("ascii")
    return (b"".join(head) + b"\n" + line + b"\n" + parts[0] + b"\n" + line + b"\n"
            + parts[1] + b"\n" + line + b"--\n")
