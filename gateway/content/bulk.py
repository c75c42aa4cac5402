"""Large base64 bodies kept out of the parser: hashed, sniffed and counted as they stream.

A 20 MB attachment is some 270,000 lines of base64.  Parsed by the email package it
becomes a list of lines, one joined string and then the decoded bytes, several times its
size in memory, only to be hashed and thrown away.  Before parsing, :func:`cut_runs`
replaces every long run of pure base64 lines (at least ``MIN_RUN`` bytes) in the raw
message by one marker line, so the parser sees a small skeleton with the same structure
(a run holds no boundary, no header, no ``=``).  When the attachment stripper removes a
part whose body holds markers, :meth:`Bulk.summary` decodes the real body in chunks
straight from the raw bytes, feeding SHA-256, the byte count and the first bytes for
libmagic: the decoded attachment is never held whole.

The result is exactly what decoding the whole payload gives, because a summary is only
made for a body that decodes without any leniency (one ``base64`` transfer encoding,
nothing but base64 characters, padding only at the end, whole 4-character groups).
Anything else, or a run inside text that is kept or a forwarded message, raises
:class:`NeedFullParse` and the message is parsed the ordinary way.
"""
from __future__ import annotations

import binascii
import hashlib
import re
import secrets
from dataclasses import dataclass

from gateway.content.sniff import SNIFF_LIMIT, sniff

MIN_RUN = 64 * 1024
CHUNK = 1024 * 1024  # a multiple of 4 bytes of base64 text per decoding step
_RUN = re.compile(rb"^(?:[A-Za-z0-9+/]++\r?\n)++", re.M)
_B64 = re.compile(rb"[A-Za-z0-9+/]*+")
_B64_END = re.compile(rb"[A-Za-z0-9+/]*+={0,2}")


class NeedFullParse(Exception):
    """A run sits where its bytes are needed as they are: parse the whole message."""


@dataclass(frozen=True)
class Summary:
    size: int
    sha256: str
    sniffed: str


class Bulk:
    """The runs cut from one raw message and how to find them in its parts."""

    def __init__(self, raw: bytes, runs: list[tuple[int, int]], nonce: str, reparse=None):
        self.raw, self.runs, self.nonce = raw, runs, nonce
        self.reparse = reparse  # () -> the message parsed whole (set by the parser)
        self._marker = re.compile(r"=PORTALRUN" + nonce + r"-(\d+)=\r?\n?")

    def marker(self, i: int, ending: bytes) -> bytes:
        return b"=PORTALRUN" + self.nonce.encode() + b"-%d=" % i + ending

    def holds_run(self, part) -> bool:
        """True if this leaf part's body (as parsed) holds a marker."""
        payload = part._payload  # the undecoded body the parser stored, never copied
        return isinstance(payload, str) and self.nonce in payload

    def summary(self, part) -> Summary | None:
        """Size, SHA-256 and sniffed type of the part's decoded body, read from the raw
        bytes; None when the part holds no run.  Raises NeedFullParse when the body
        cannot be decoded chunk by chunk exactly as the email package decodes it whole."""
        if not self.holds_run(part):
            return None
        encodings = part.get_all("content-transfer-encoding") or []
        if len(encodings) != 1 or str(encodings[0]).lower() != "base64":
            raise NeedFullParse("not plain base64")
        decoder = _Decoder()
        pieces = self._marker.split(part._payload)
        for i, piece in enumerate(pieces):
            if i % 2:
                start, end = self.runs[int(piece)]
                for at in range(start, end, CHUNK):
                    decoder.feed(self.raw[at:min(at + CHUNK, end)].translate(None, b"\r\n"))
                continue
            try:  # as the email package does: bytes, then bytes' own line breaks
                text = b"".join(piece.encode("ascii", "surrogateescape").splitlines())
            except UnicodeEncodeError:
                raise NeedFullParse("not ascii") from None
            last = i == len(pieces) - 1
            if not (_B64_END if last else _B64).fullmatch(text):
                raise NeedFullParse("not plain base64")
            decoder.feed(text)
        return decoder.close()


class _Decoder:
    """Base64 text in, decoded bytes hashed, counted and their head kept for libmagic."""

    def __init__(self):
        self.carry, self.size, self.head = b"", 0, bytearray()
        self.sha = hashlib.sha256()

    def feed(self, text: bytes) -> None:
        text = self.carry + text
        whole = len(text) - len(text) % 4
        self.carry = text[whole:]
        if whole:
            self._out(binascii.a2b_base64(text[:whole]))

    def _out(self, data: bytes) -> None:
        self.sha.update(data)
        self.size += len(data)
        if len(self.head) < SNIFF_LIMIT:
            self.head += data[:SNIFF_LIMIT - len(self.head)]

    def close(self) -> Summary:
        if self.carry:  # the base64 text was not whole 4-character groups
            raise NeedFullParse("padding")
        return Summary(self.size, self.sha.hexdigest(), sniff(bytes(self.head)))


def cut_runs(raw: bytes) -> tuple[bytes, Bulk | None]:
    """(skeleton, bulk): `raw` with every long base64 run replaced by a marker line, or
    (`raw`, None) when there is none."""
    runs = [m.span() for m in _RUN.finditer(raw) if m.end() - m.start() >= MIN_RUN]
    if not runs:
        return raw, None
    nonce = secrets.token_hex(8)
    while nonce.encode() in raw:  # a sender cannot forge a marker of ours
        nonce = secrets.token_hex(8)
    bulk = Bulk(raw, runs, nonce)
    pieces, last = [], 0
    for i, (start, end) in enumerate(runs):
        ending = b"\r\n" if raw[end - 2:end] == b"\r\n" else b"\n"
        pieces += [raw[last:start], bulk.marker(i, ending)]
        last = end
    pieces.append(raw[last:])
    return b"".join(pieces), bulk
