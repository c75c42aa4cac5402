"""Small, never-raising helpers shared by the attachment stripper.

* :func:`sniff` -- libmagic MIME type of a byte string (python-magic).
* :func:`looks_binary` -- is a "text" part really a binary/document format?
* :func:`decode_text` -- lenient charset decoding that can be reversed
  (``surrogateescape``), so that inline yEnc blocks can be turned back into
  their exact bytes.
* :func:`clean_filename` / :func:`clean_text` -- make strings safe to log and
  to show (no control characters, no lone surrogates).
"""

from __future__ import annotations

import codecs
import hashlib
import mimetypes
import re

import magic

#: libmagic only needs the head of a buffer; never hand it more than this.
SNIFF_LIMIT = 1024 * 1024

#: Sniffed types that are acceptable content for a text/plain or text/html part.
_TEXTY_EXACT = frozenset({
    "application/x-empty", "inode/x-empty", "application/json",
    "application/x-wine-extension-ini", "application/octet-stream",
    "message/rfc822", "message/news",
})

#: Sniffed text/* types that are really another format in disguise
#: (removed from text/plain or text/html parts as "text-part-not-allowed").
DISGUISED_TEXT = frozenset({
    "text/rtf", "text/vcard", "text/x-vcard", "text/calendar",
    "text/x-vcalendar", "text/directory",
})

#: Formats libmagic recognises from two or three printable characters at the start
#: ("BP" or "IN;" HP-GL, "P1"-"P6" portable anymaps, "%!" PostScript): a patient's text
#: that happens to begin that way ("BP tonight: 162/104") is still text, so a text part
#: sniffed as one of these is judged by its characters (:func:`has_binary_chars`).
WEAK_SIGNATURES = frozenset({
    "application/vnd.hp-hpgl", "image/x-portable-bitmap", "image/x-portable-graymap",
    "image/x-portable-greymap", "image/x-portable-pixmap", "image/x-portable-anymap",
    "application/postscript",
})

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SURROGATE_RE = re.compile(r"[\ud800-\udfff]")


def sniff(data: bytes) -> str:
    """MIME type of *data* according to libmagic; never raises."""
    try:
        result = magic.from_buffer(bytes(data[:SNIFF_LIMIT]), mime=True)
    except Exception:  # magic.MagicException, odd libmagic states
        return "application/octet-stream"
    return (result or "application/octet-stream").strip().lower()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def control_ratio(text: str) -> float:
    """Share of C0 control characters (other than tab/CR/LF) in *text*."""
    if not text:
        return 0.0
    return len(_CONTROL_RE.findall(text)) / len(text)


def is_texty(sniffed: str) -> bool:
    """May bytes libmagic calls *sniffed* be the content of a text part?

    ``application/octet-stream`` counts as texty here: libmagic says that for
    text in an unusual charset too, so such text is judged by
    :func:`has_binary_chars` instead.
    """
    return (sniffed.startswith(("text/", "message/")) or sniffed in _TEXTY_EXACT
            or sniffed in WEAK_SIGNATURES)


def has_binary_chars(text: str) -> bool:
    """NULs, or more than 1% control characters: not something a person wrote.

    libmagic only looks at the head of a buffer, so this catches binary data
    tacked on after a line of prose (after embedded uuencode/yEnc blocks have
    been cut out).
    """
    return "\x00" in text or control_ratio(text) > 0.01


def _codec_name(charset: str | None) -> str | None:
    if not charset:
        return None
    try:
        info = codecs.lookup(charset.strip().strip('"').lower())
    except (LookupError, ValueError, TypeError):
        return None
    if not getattr(info, "_is_text_encoding", True):
        return None  # e.g. "base64", "rot13": codecs but not charsets
    return info.name


# Labels that mail clients write for what is really Windows-1252 text (the WHATWG
# Encoding Standard reads them all as windows-1252): their 0x80-0x9F bytes are quotes,
# dashes and the euro sign, never C1 control characters.
_AS_CP1252 = frozenset({"ascii", "latin-1", "iso8859-1", "cp1252"})
# Charsets whose bytes may well be valid UTF-8 by design: never second-guessed.
_WIDE = ("utf-16", "utf-32", "utf-7")


def _plausibly_wide(codec: str, data: bytes) -> bool:
    """UTF-7 is 7-bit; UTF-16/32 text has a byte order mark or NUL bytes (the zero half of
    every Latin character)."""
    if codec == "utf-7":
        return data.isascii()
    return data[:4] in (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE) or \
        data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE) or b"\x00" in data


def decode_text(data: bytes, charset: str | None) -> tuple[str, str]:
    """Decode *data* leniently; return ``(text, codec_used)``.

    Undecodable bytes become lone surrogates (``surrogateescape``), so
    ``text.encode(codec_used, "surrogateescape")`` gives the bytes back;
    :func:`clean_text` later turns the surrogates into U+FFFD.  Bytes that are valid
    UTF-8 and not plain ASCII are read as UTF-8 whatever the label says (a UTF-8 body
    labelled GB2312 or ISO-8859-1 is common, and legacy text is almost never valid
    UTF-8 by chance).  Latin-1 and ASCII labels are read as Windows-1252.  A UTF-7,
    UTF-16 or UTF-32 label on bytes that cannot be that is ignored.  Unknown or missing
    charsets: UTF-8 when it fits, else Windows-1252.
    """
    codec = _codec_name(charset)
    if codec in _AS_CP1252:
        codec = "cp1252"
    if codec and codec.startswith(_WIDE) and not _plausibly_wide(codec, data):
        codec = None  # e.g. Latin-1 bytes labelled UTF-16: the label is wrong
    attempts = [(codec, "strict" if codec == "utf-7" else "surrogateescape")] if codec else []
    if codec not in ("utf-8",) and not (codec or "").startswith(_WIDE) \
            and not data.isascii():
        attempts.insert(0, ("utf-8", "strict"))
    attempts += [("utf-8", "strict"), ("cp1252", "surrogateescape")]
    for name, errors in attempts:
        try:
            return data.decode(name, errors), name
        except Exception:  # UnicodeError, odd codec failures
            continue
    return data.decode("latin-1"), "latin-1"


def encode_back(text: str, codec: str) -> bytes:
    """Inverse of :func:`decode_text` (best effort, never raises)."""
    for name in (codec, "utf-8"):
        try:
            return text.encode(name, "surrogateescape")
        except Exception:
            continue
    return text.encode("utf-8", "replace")


def clean_text(text: str) -> str:
    """Drop control characters and replace lone surrogates with U+FFFD."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _SURROGATE_RE.sub("\ufffd", text)
    return _CONTROL_RE.sub("", text)


def clean_filename(name: object) -> str | None:
    """A sender-given file name made safe to log and to put in a banner.

    The name is kept as given, except that control characters (CR/LF, NUL,
    ...) are removed, lone surrogates become U+FFFD, surrounding whitespace is
    trimmed and the result is capped at 255 characters.  Empty -> None.
    """
    if name is None:
        return None
    try:
        text = str(name)
    except Exception:
        return None
    text = _SURROGATE_RE.sub("\ufffd", text)
    text = re.sub(r"[\x00-\x1f\x7f]", "", text).strip()
    return text[:255] or None


def guess_type(filename: str | None, default: str = "application/octet-stream") -> str:
    """Type implied by a file name's extension (for blocks without a header)."""
    if filename:
        try:
            guessed, _ = mimetypes.guess_type(filename, strict=False)
        except Exception:
            guessed = None
        if guessed:
            return guessed
    return default
