"""Parse a message once, with its shape bounded while it is parsed.  Pure library.

:func:`parse_bytes` runs the email package's own feed parser, counting parts and nesting
on the tree as the parser builds it: the moment a message opens more than ``max_parts``
parts, or nests multiparts and forwarded messages deeper than ``max_depth``, parsing stops
with :class:`MimeLimit`.  So no regular expression guesses at boundaries (RFC 2231
``boundary*0=`` continuations, 70-character boundaries, digests are all read the way the
parser reads them), the cost of a hostile message is bounded by the limits, and deep
nesting never reaches the interpreter's recursion limit.

Two quirks of mail clients are repaired, so that no text is lost: an unquoted boundary
holding ``=`` (``boundary=----=_Part_1``, older Outlook) is quoted before parsing, because
the strict header parser would cut it at the ``=``; and a top-level multipart without a
boundary parameter gets the one its body plainly uses (a first ``--X`` line and a closing
``--X--``).  Only ``Content-Type`` header fields are touched; the raw bytes the gateway
hashes and logs are not changed.
"""
from __future__ import annotations

import email.feedparser
import email.policy
import re
import threading
from collections import OrderedDict

from gateway.content.bulk import cut_runs

HEADERS_TO_FORCE = ("From", "Subject", "Message-ID", "Content-Type")

# MIME structure headers: the parser and the stripper ask for Content-Type about twenty
# times per message (every ``get_content_type``, ``get_param``...), and the default policy
# builds a new ``headerregistry`` object each time.  Their values repeat across messages
# and carry no patient data (Content-Disposition, which may name a file, is left out).
_SHARED_HEADERS = frozenset({"content-type", "content-transfer-encoding", "mime-version"})
_SHARED_MAX_VALUE, _SHARED_MAX_ENTRIES = 300, 1024


class _InboundPolicy(email.policy.EmailPolicy):
    """``email.policy.default``, except that a MIME structure header is parsed once per
    distinct value (a bounded cache; header objects are read-only)."""

    _cache: OrderedDict = OrderedDict()
    _lock = threading.Lock()

    def header_fetch_parse(self, name, value):
        if hasattr(value, "name") or name.lower() not in _SHARED_HEADERS \
                or len(value) > _SHARED_MAX_VALUE:
            return super().header_fetch_parse(name, value)
        key = (name.lower(), value)
        with self._lock:
            header = self._cache.get(key)
            if header is not None:
                self._cache.move_to_end(key)
                return header
        header = super().header_fetch_parse(name, value)  # may raise: nothing is kept
        with self._lock:
            self._cache[key] = header
            if len(self._cache) > _SHARED_MAX_ENTRIES:
                self._cache.popitem(last=False)
        return header


INBOUND_POLICY = _InboundPolicy()


class MimeLimit(Exception):
    """The message is nested too deeply (``kind == "depth"``) or has too many parts."""

    def __init__(self, kind: str):
        super().__init__(kind)
        self.kind = kind


class _BoundedParser(email.feedparser.BytesFeedParser):
    def __init__(self, policy, max_depth: int, max_parts: int):
        super().__init__(policy=policy)
        self.max_depth, self.max_parts, self.parts = max_depth, max_parts, 0

    def _new_message(self):  # called by the parser for every part it opens
        self.parts += 1
        if self.parts > self.max_parts:
            raise MimeLimit("parts")
        if len(self._msgstack) > self.max_depth:  # ancestors still open = nesting depth
            raise MimeLimit("depth")
        super()._new_message()


def _parse(raw: bytes, policy, max_depth: int, max_parts: int):
    parser = _BoundedParser(policy, max_depth, max_parts)
    parser.feed(raw)
    return parser.close()


def parse_bytes(raw: bytes, max_depth: int = 20, max_parts: int = 1000,
                cut: bool = True):
    """(message, extra defects).  Raises MimeLimit; any other problem is a defect.

    ``policy.default`` raises on some hostile headers (e.g. ``Content-Type: text/plain;
    title*``); such a message is parsed again with the lenient ``compat32`` policy, which
    the attachment stripper also handles, and the fallback is recorded as a defect.
    With `cut`, long base64 runs are kept out of the parse (gateway.content.bulk): the
    message then carries ``portal_bulk``, which can parse it whole when needed."""
    fixed = quote_odd_boundaries(raw)
    extra = ["UnquotedBoundaryRepaired"] if fixed is not raw else []
    try:
        skeleton, bulk = cut_runs(fixed) if cut else (fixed, None)
        msg = _parse(skeleton, INBOUND_POLICY, max_depth, max_parts)
        for name in HEADERS_TO_FORCE:
            header_values(msg, name)  # header objects are built lazily; force them now
        if msg.get_content_maintype() == "multipart" and not msg.is_multipart():
            repaired = add_missing_boundary(fixed)
            if repaired is not None:
                msg, bulk = _parse(repaired, INBOUND_POLICY, max_depth, max_parts), None
                extra.append("MissingBoundaryRepaired")
        if bulk is not None:
            bulk.reparse = lambda: parse_bytes(raw, max_depth, max_parts, cut=False)[0]
            msg.portal_bulk = bulk
        return msg, extra
    except MimeLimit:
        raise
    except Exception as e:
        msg = _parse(fixed, email.policy.compat32, max_depth, max_parts)
        return msg, extra + [f"ParseFallback:{type(e).__name__}"]


def header_values(msg, name: str) -> list:
    """Every NAME header of a parsed inbound message (``msg.get_all(name) or []``), parsed
    once and kept with the message: every ``msg.get_all`` would build new ``headerregistry``
    objects, and the steps read From, Subject and Message-ID several times.  The inbound
    message is never changed after parsing, so the kept values stay true."""
    cache = msg.__dict__.setdefault("_portal_headers", {})
    key = name.lower()
    if key not in cache:
        cache[key] = msg.get_all(name) or []
    return cache[key]


def header_text(msg, name: str) -> str | None:
    """The first NAME header of a parsed inbound message as text (None when absent)."""
    values = header_values(msg, name)
    return str(values[0]) if values else None


# An unquoted boundary value with "=" in it (tspecials are not allowed unquoted).
_BOUNDARY_VALUE = re.compile(rb'boundary[ \t]*+=[ \t]*+([^\s;]++)', re.I)
_CONTENT_TYPE = re.compile(rb"content-type[ \t]*:", re.I)


def _header_name_line(raw: bytes, pos: int) -> int:
    """Start of the header field holding `pos`, walking back over at most 20 folded lines
    (a bound, so that many matches cost linear time)."""
    start = raw.rfind(b"\n", 0, pos) + 1
    for _ in range(20):
        if start == 0 or raw[start:start + 1] not in (b" ", b"\t"):
            break
        start = raw.rfind(b"\n", 0, start - 1) + 1
    return start


def quote_odd_boundaries(raw: bytes) -> bytes:
    """`raw` with ``boundary=a=b`` in Content-Type fields written ``boundary="a=b"``;
    the very same object when there is nothing to repair."""
    pieces, last = [], 0
    for m in _BOUNDARY_VALUE.finditer(raw):
        if m.group(1).startswith(b'"') or b"=" not in m.group(1):
            continue
        start = _header_name_line(raw, m.start())
        if not _CONTENT_TYPE.match(raw, start):
            continue
        pieces += [raw[last:m.start(1)], b'"', m.group(1), b'"']
        last = m.end(1)
    if not pieces:
        return raw
    pieces.append(raw[last:])
    return b"".join(pieces)


_TOP_MULTIPART = re.compile(rb"^content-type[ \t]*+:[ \t]*+multipart/[^\r\n]*+"
                            rb"(?:\r?\n[ \t][^\r\n]*+)*+", re.I | re.M)
_FIRST_DELIMITER = re.compile(rb"^--([^\r\n]{1,70})\r?$", re.M)


def add_missing_boundary(raw: bytes) -> bytes | None:
    """`raw` with ``boundary="X"`` added to a top-level multipart Content-Type that has
    none, when the body's first delimiter line ``--X`` is closed by ``--X--``; else None."""
    end = raw.find(b"\r\n\r\n")
    end = raw.find(b"\n\n") if end < 0 else end
    if end < 0:
        return None
    field = _TOP_MULTIPART.search(raw, 0, end)
    if field is None or b"boundary" in field.group(0).lower():
        return None
    first = _FIRST_DELIMITER.search(raw, end)
    boundary = first.group(1).rstrip(b" \t") if first else b""
    if not boundary or b'"' in boundary or b"--" + boundary + b"--" not in raw[first.end():]:
        return None
    return raw[:field.end()] + b'; boundary="' + boundary + b'"' + raw[field.end():]
