"""Never-raising accessors for MIME parts (header values, payload bytes).

The email package can raise on hostile input (odd header syntax, codecs,
serialising a broken message); every function here swallows that and
returns a conservative default.
"""

from __future__ import annotations

import email.message
import email.policy
import email.utils
import quopri
import re
from email.header import decode_header, make_header

from gateway.content.inline import lenient_b64decode
from gateway.content.sniff import clean_filename

_META_CHARSET = re.compile(rb"<meta[^>]{0,200}?charset\s*=\s*[\"']?\s*([\w.:-]+)", re.I)


def content_type(part: email.message.Message) -> str:
    """Declared type, lower case, without parameters (RFC defaults apply)."""
    try:
        return part.get_content_type()
    except Exception:
        return "application/octet-stream"


def disposition(part: email.message.Message) -> str | None:
    try:
        value = part.get_content_disposition()
    except Exception:
        try:
            raw = str(part.get("content-disposition", "") or "")
        except Exception:
            return "attachment"  # unreadable: assume the worst
        value = raw.split(";", 1)[0].strip().lower() or None
    return value


def filename_of(part: email.message.Message) -> str | None:
    """File name as the sender gave it: filename= or name=, RFC 2231 and
    RFC 2047 decoded, cleaned for logging."""
    try:
        name = part.get_filename()
    except Exception:
        name = None
    if name is None:
        try:
            name = part.get_param("name", header="content-type")
            name = email.utils.collapse_rfc2231_value(name) if name else None
        except Exception:
            name = None
    if isinstance(name, str) and "=?" in name and "?=" in name:
        try:  # encoded-words inside a quoted string (Outlook, Thunderbird)
            name = str(make_header(decode_header(name)))
        except Exception:
            pass
    return clean_filename(name)


def _transfer_encoding(part: email.message.Message) -> str:
    try:
        return str(part.get("content-transfer-encoding", "") or "").strip().lower()
    except Exception:
        return ""


def payload_bytes(part: email.message.Message) -> bytes:
    """Transfer-decoded bytes of a leaf part (base64/QP/uuencode decoded; an encoding
    name with stray spaces or capitals, ``Base64 ``, is still honoured)."""
    try:
        data = part.get_payload(decode=True)
        cte = _transfer_encoding(part)
        if cte in ("base64", "quoted-printable") and cte != str(
                part.get("content-transfer-encoding", "")).lower():
            raw = part.get_payload(decode=False)
            raw = raw.encode("ascii", "surrogateescape") if isinstance(raw, str) else b""
            data = lenient_b64decode(raw) if cte == "base64" else quopri.decodestring(raw)
    except Exception:
        data = None
    if data is None:
        try:
            raw = part.get_payload()
            data = raw if isinstance(raw, (bytes, str)) else None
        except Exception:
            data = None
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    return bytes(data or b"")


def _serialise(msg: email.message.Message) -> bytes:
    for policy in (None, email.policy.compat32):
        try:
            if policy is None:
                return msg.as_bytes()
            return msg.as_bytes(policy=policy)
        except Exception:
            continue
    return b""


def subtree_bytes(part: email.message.Message) -> bytes:
    """Bytes of a container being removed whole: the enclosed message for
    message/*, the part itself for a multipart."""
    try:
        if part.get_content_maintype() == "message" and part.is_multipart():
            inner = part.get_payload()
            if isinstance(inner, list) and len(inner) == 1:
                return _serialise(inner[0])
        if not part.is_multipart():
            return payload_bytes(part)
    except Exception:
        pass
    return _serialise(part)


def charset_of(part: email.message.Message, data: bytes, is_html: bool) -> str | None:
    """Declared charset; for HTML without one, a <meta charset> near the top."""
    try:
        charset = part.get_content_charset()
    except Exception:
        charset = None
    if charset or not is_html:
        return charset
    m = _META_CHARSET.search(data[:4096])
    return m.group(1).decode("ascii", "replace") if m else None
