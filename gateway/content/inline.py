"""Cut files smuggled *inside* text: uuencode, yEnc, data: URIs, base64 runs.

:func:`cut_blobs` scans a text part's decoded string and returns the text
without the blocks plus one :class:`Blob` per block, holding the block's
*decoded* bytes (so size, SHA-256 and sniffed type describe the real file).

Recognised blocks (reason id in brackets):

* ``begin 644 name`` ... ``end`` (traditional uuencode) and
  ``begin-base64 644 name`` ... ``====`` (``uuencode -m``)  [uuencoded-block]
  A block without its closing line ends after its last data line.
* ``=ybegin ... name=x`` [``=ypart``] ... ``=yend``  [yenc-block]
  A block without ``=yend`` runs to the end of the text (yEnc data lines have
  no recognisable shape, so everything after ``=ybegin`` is treated as data).
* ``data:[type][;param][;base64],payload`` [data-uri] -- only when it has a
  media type or parameters, so the word "data:" in prose is left alone.
* a run of lines of 40+ base64 characters each (plus a shorter last line),
  60+ characters in all, mixing upper case, lower case and digits
  [base64-block] -- a file pasted as base64, or the body of a part whose
  headers were lost.  Prose never has 40 such characters without a space or
  punctuation; PGP armour bodies match too, which is intended.

yEnc is 8-bit: the text must have been decoded with ``surrogateescape`` so
that the block can be re-encoded to its exact bytes (``codec`` argument).
Never raises on any input.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from urllib.parse import unquote, unquote_to_bytes

from gateway.content.sniff import encode_back, guess_type


@dataclass(frozen=True)
class Blob:
    filename: str | None
    declared_type: str
    data: bytes
    reason: str


_LINE_RE = re.compile(r"[^\n]*\n|[^\n]+")
_UU_BEGIN = re.compile(r"^begin(-base64)? +([0-7]{3,4})(?: +(.*))?$")
_B64_CHARS = re.compile(r"^[A-Za-z0-9+/]*={0,2}$")
# One or more whitespace-separated tokens of 40+ base64 characters (HTML
# conversion joins a block's lines with spaces), maybe a shorter last token.
_B64_LONG = re.compile(r"^\s*(?:[A-Za-z0-9+/]{40,}={0,2}\s+)*[A-Za-z0-9+/]{40,}={0,2}"
                       r"(?:\s+[A-Za-z0-9+/]+={0,2})?\s*$")
_B64_TAIL = re.compile(r"^\s*[A-Za-z0-9+/]+={0,2}\s*$")
_NOT_B64 = re.compile(rb"[^A-Za-z0-9+/\-_]")
_SPACES = re.compile(r"\s+")
_MIXED = (re.compile("[a-z]"), re.compile("[A-Z]"), re.compile("[0-9]"))
_YENC_NAME = re.compile(r"\bname=(.*)$")
_YENC_TABLE = bytes((c - 42) & 0xFF for c in range(256))
# Every pattern here is linear: possessive quantifiers, classes that cannot overlap.
_HEADER = (r"data:(?P<mime>[a-z0-9][\w.+-]*+/[\w.+-]++)?"
           r"(?P<params>(?:;[\w.+-]++(?:=[^;,\s\"'<>()]*+)?)*+)")
DATA_URI_RE = re.compile(_HEADER + r",(?P<payload>[^\s\"'<>()]*+)", re.IGNORECASE)
_HEADER_RE = re.compile(_HEADER, re.IGNORECASE)
# A run of characters a data: URI header may hold, from one "data:" up to the comma.
_HEADER_RUN = re.compile(r"data:[^,\s\"'<>()]*+", re.IGNORECASE)
_PAYLOAD = re.compile(r"[^\s\"'<>()]*+")
_DATA = re.compile("data:", re.IGNORECASE)
_TAIL_WINDOW = 512


def split_lines(text: str) -> list[str]:
    """Split on LF only (``str.splitlines`` also splits on \\x0c, \\x85 ...,
    which yEnc data may legitimately contain); line ends are kept."""
    return _LINE_RE.findall(text)


def lenient_b64decode(data: str | bytes) -> bytes:
    """Decode base64, ignoring junk characters and bad padding."""
    try:
        if isinstance(data, str):
            data = data.encode("ascii", "ignore")
        clean = _NOT_B64.sub(b"", data).translate(
            bytes.maketrans(b"-_", b"+/"))
        if len(clean) % 4 == 1:
            clean = clean[:-1]
        return base64.b64decode(clean + b"=" * (-len(clean) % 4))
    except Exception:
        return b""


def cut_blobs(text: str, codec: str = "utf-8",
              line_blocks_only: bool = False) -> tuple[str, list[Blob]]:
    """Return *text* without embedded files, and the files found.

    With *line_blocks_only* only uuencode and yEnc blocks are cut (used on
    HTML source, whose data: URIs are handled by the HTML parser)."""
    lines = split_lines(text)
    out: list[str] = []
    blobs: list[Blob] = []
    i = 0
    while i < len(lines):
        nxt, blob = _match_block(lines, i, codec)
        if blob is None:
            out.append(lines[i])
            i += 1
        else:
            blobs.append(blob)
            i = nxt
    if line_blocks_only:
        return "".join(out), blobs
    rest, uris = cut_data_uris("".join(out))
    rest, runs = _cut_base64_runs(rest)
    return rest, blobs + uris + runs


def _match_block(lines: list[str], i: int, codec: str) -> tuple[int, Blob | None]:
    head = lines[i].rstrip("\r\n")
    m = _UU_BEGIN.match(head)
    if m:
        return _read_uu(lines, i, bool(m.group(1)), (m.group(3) or "").strip() or None)
    if head.startswith("=ybegin ") or head == "=ybegin":
        return _read_yenc(lines, i, codec)
    return i, None


def _uu_line(line: str) -> bytes | None:
    """Decode one uuencoded line, or None if it is not one."""
    if not line or any(c < " " or c > "`" for c in line):
        return None
    count = (ord(line[0]) - 32) & 63
    expected = (count + 2) // 3 * 4
    if len(line) - 1 > expected + 4 or len(line) - 1 < expected // 2:
        return None
    try:
        return binascii.a2b_uu(line)
    except binascii.Error:
        try:  # extra garbage at the end of the line (as the old uu module did)
            return binascii.a2b_uu(line[: (count * 4 + 5) // 3 + 1])
        except binascii.Error:
            return None


def _read_uu(lines: list[str], i: int, is_b64: bool, name: str | None):
    closing = "====" if is_b64 else "end"
    chunks: list[bytes | str] = []
    last = end_at = None
    j = i + 1
    while j < len(lines):
        line = lines[j].rstrip("\r\n")
        if line.strip() == closing:
            end_at = j
            break
        if is_b64:
            chunk = line.strip() if line.strip() and _B64_CHARS.match(line.strip()) else None
        else:
            chunk = _uu_line(line) if line.strip() else None
        if chunk is None:
            if line.strip():
                break
        else:
            chunks.append(chunk)
            last = j
        j += 1
    if end_at is None and last is None:
        return i, None
    stop = end_at + 1 if end_at is not None else last + 1
    data = lenient_b64decode("".join(chunks)) if is_b64 else b"".join(chunks)
    filename = (name or "").strip() or None
    return stop, Blob(filename, guess_type(filename), data, "uuencoded-block")


def yenc_decode(raw: bytes) -> bytes:
    """Decode yEnc data (line ends already removed)."""
    pieces = raw.split(b"=")
    out = bytearray(pieces[0].translate(_YENC_TABLE))
    for piece in pieces[1:]:
        if piece:
            out.append((piece[0] - 106) & 0xFF)
            out += piece[1:].translate(_YENC_TABLE)
    return bytes(out)


def _read_yenc(lines: list[str], i: int, codec: str):
    m = _YENC_NAME.search(lines[i].rstrip("\r\n"))
    filename = m.group(1).strip() if m else None
    j = i + 1
    if j < len(lines) and lines[j].startswith("=ypart"):
        j += 1
    raw = bytearray()
    while j < len(lines) and not lines[j].startswith("=yend"):
        line = lines[j]
        line = line[:-1] if line.endswith("\n") else line
        line = line[:-1] if line.endswith("\r") else line
        raw += encode_back(line, codec)
        j += 1
    stop = min(j + 1, len(lines))
    filename = filename or None
    return stop, Blob(filename, guess_type(filename), yenc_decode(bytes(raw)), "yenc-block")


def decode_data_uri(uri: str) -> Blob | None:
    """Blob for one ``data:`` URI (whitespace inside is ignored), or None."""
    compact = _SPACES.sub("", uri)
    m = DATA_URI_RE.match(compact)
    if not m:
        return None
    return _blob_from_match(m)


def _blob_from_match(m: re.Match) -> Blob:
    params = [p for p in (m.group("params") or "").split(";") if p]
    filename = None
    is_b64 = False
    for param in params:
        key, _, value = param.partition("=")
        if key.lower() == "base64" and not value:
            is_b64 = True
        elif key.lower() in ("name", "filename") and value:
            filename = unquote(value, errors="replace")
    try:
        data = unquote_to_bytes((m.group("payload") or "").encode("utf-8", "surrogateescape"))
    except Exception:
        data = b""
    if is_b64:
        data = lenient_b64decode(data)
    mime = (m.group("mime") or "text/plain").lower()
    return Blob(filename, mime, data, "data-uri")


def _uri_start(text: str, run: re.Match) -> int | None:
    """Where the data: URI ending at this run's comma starts, or None.

    Searching with DATA_URI_RE itself would try every "data:" inside a long run and scan
    to the run's end each time (quadratic).  Instead: the run's first "data:", else any
    "data:" among the last _TAIL_WINDOW characters (a real header is short)."""
    start, end = run.start(), run.end()
    candidates = [start] + [m.start() for m in _DATA.finditer(
        text, max(start + 1, end - _TAIL_WINDOW), end)]
    for pos in candidates:
        m = _HEADER_RE.match(text, pos, end)
        if m and m.end() == end and (m.group("mime") or m.group("params")):
            return pos
    return None


def cut_data_uris(text: str) -> tuple[str, list[Blob]]:
    """Remove ``data:`` URIs (with a type or parameters) from plain text (linear time)."""
    blobs: list[Blob] = []
    pieces: list[str] = []
    last = 0
    try:
        for run in _HEADER_RUN.finditer(text):
            if run.start() < last or text[run.end():run.end() + 1] != ",":
                continue
            pos = _uri_start(text, run)
            if pos is None:
                continue
            m = DATA_URI_RE.match(text, pos)
            blobs.append(_blob_from_match(m))
            pieces.append(text[last:pos])
            last = m.end()
        pieces.append(text[last:])
        return "".join(pieces), blobs
    except Exception:
        return text, blobs


def _is_b64_run(run: list[str]) -> bool:
    joined = "".join(s.strip() for s in run)
    long_enough = len(joined) >= 60
    mixed = all(p.search(joined) for p in _MIXED)
    return long_enough and mixed


def _cut_base64_runs(text: str) -> tuple[str, list[Blob]]:
    lines = split_lines(text)
    out: list[str] = []
    blobs: list[Blob] = []
    i = 0
    while i < len(lines):
        j = i
        while j < len(lines) and _B64_LONG.match(lines[j]):
            j += 1
        if j > i and j < len(lines) and _B64_TAIL.match(lines[j]):
            j += 1  # the shorter last line of a base64 body
        if j > i and _is_b64_run(lines[i:j]):
            data = lenient_b64decode("".join(lines[i:j]))
            blobs.append(Blob(None, "application/octet-stream", data, "base64-block"))
            i = j
            continue
        out.extend(lines[i:max(j, i + 1)])
        i = max(j, i + 1)
    return "".join(out), blobs
