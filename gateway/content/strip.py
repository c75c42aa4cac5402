"""Attachment removal and text extraction.  Pure library.

``strip_message(msg)`` takes a message parsed with
``email.message_from_bytes(raw, policy=email.policy.default)`` and returns a
:class:`Stripped`: the patient's text only, plus one :class:`RemovedItem`
per thing that was taken out.  It never raises; broken input degrades to
"remove it and log it", never to "let it through".

Every part is visited with ``msg.walk()`` (which, unlike
``iter_attachments()``, reaches nested parts).  A part is *kept as text* only
if it is ``text/plain`` or ``text/html``, has no file name, has no
Content-Disposition other than ``inline``, and its decoded bytes sniff
(libmagic) as text.  Everything else is removed.  Reason ids:

==========================  ===============================================
``attachment``              Content-Disposition other than inline (i.e.
                            attachment, or a misspelt/unknown value), or a
                            file name (filename= / name=), whatever the type;
                            also a multipart container marked that way
``inline-image``            image/* part not marked as attachment (cid:
                            images in multipart/related, pasted images)
``non-text-part``           any other non-text leaf (audio, application/...),
                            and message/* other than rfc822/global/partial
                            (delivery-status, external-body, ...)
``text-part-not-allowed``   text/* other than plain/html (calendar, vCard,
                            CSV, XML, ...), or a plain/html part whose bytes
                            sniff as vCard/iCalendar/RTF
``binary-in-text-part``     text/plain or text/html whose bytes sniff as a
                            binary or document format (e.g. a PDF), or,
                            once embedded blocks are cut, still hold NULs or
                            over 1% control characters
``forwarded-message``       message/rfc822 or message/global
``partial-message``         message/partial
``tnef``                    application/ms-tnef, application/vnd.ms-tnef, a
                            part named winmail.dat, or bytes sniffed as TNEF
``malformed-multipart``     multipart/* whose body could not be split
                            (missing/wrong boundary): it is not readable as
                            text without exposing encoded attachments
``malformed-part``          a part that could not be analysed (an exception
                            inside the email package); logged, never shown
``malformed-message``       the walk itself failed (e.g. nesting too deep
                            for the interpreter): the unvisited rest is lost
``ambiguous-headers``       a part with two Content-Type, -Transfer-Encoding or
                            -Disposition headers: parsers disagree on which
                            wins (a smuggling trick), so it is never shown
``uuencoded-block``         \\
``yenc-block``               |  files embedded inside a kept text part; cut
``data-uri``                 |  from the text (see ``gateway.content.inline``
``base64-block``             |  and ``gateway.content.htmltext``)
``remote-image``            /
==========================  ===============================================

Embedded blocks: in text/plain, uuencode and yEnc blocks, data: URIs and
base64 runs are cut from the decoded text.  In text/html, uuencode/yEnc
blocks are cut from the HTML source, data: URIs and remote images are taken
from the markup by the HTML parser, and data: URIs/base64 runs that survive
into the converted text are cut from it.  The same block repeated within one
part is logged once.

Forwarded messages: a message/rfc822 part is removed *as one item* and its
contents (text and nested attachments) are not visited or logged separately;
its size/SHA-256 are those of the forwarded message as re-serialised by the
email package, its sniffed type is usually ``message/rfc822``.  The patient's
own text next to it is kept.

Choosing text: in ``multipart/alternative`` the branch holding non-blank
text/plain is preferred (the last such branch, RFC 2046 order); if no branch
has plain text, the last one with HTML is converted to text (see
``gateway.content.htmltext``).  All other kept text parts (e.g. text before
and after an attachment in multipart/mixed) are joined in order, separated by
a blank line.  Embedded files found in a *non-chosen* alternative are still
logged unless the chosen alternative already logged the same file.
``html_only`` is True when all of the returned text came from HTML.

Item fields: ``sniffed_type`` is libmagic's answer for the decoded bytes
(``application/x-empty`` for no bytes, e.g. a remote image that is never
fetched); for embedded blocks ``declared_type`` is the data: URI's media type,
or the type implied by the block's file name, else application/octet-stream.
File names are decoded (RFC 2231 and RFC 2047) and cleaned of control
characters (see :func:`gateway.content.sniff.clean_filename`).

``defects`` lists the class names of the email package's defects on every
part (e.g. ``InvalidBase64PaddingDefect``), plus ``StripError:<Exception>``
for anything this module had to swallow.
"""

from __future__ import annotations

import email.message
import re
from dataclasses import dataclass, field

from gateway.content.budget import OverBudget
from gateway.content.bulk import NeedFullParse, Summary
from gateway.content.htmltext import html_to_text
from gateway.content.inline import Blob, cut_blobs
from gateway.content.parts import (
    charset_of, content_type, disposition, filename_of, payload_bytes,
    subtree_bytes,
)
from gateway.content.sniff import (
    DISGUISED_TEXT, clean_text, decode_text, has_binary_chars, is_texty, sha256_hex,
    sniff,
)

TNEF_TYPES = frozenset({"application/ms-tnef", "application/vnd.ms-tnef"})
_MESSAGE_REASONS = {
    "message/rfc822": "forwarded-message",
    "message/global": "forwarded-message",
    "message/partial": "partial-message",
}


@dataclass(frozen=True)
class RemovedItem:
    filename: str | None
    declared_type: str
    sniffed_type: str
    size: int
    sha256: str
    reason: str


@dataclass(frozen=True)
class Stripped:
    text: str
    removed: tuple[RemovedItem, ...]
    html_only: bool
    defects: tuple[str, ...]


def make_item(filename: str | None, declared: str, data: bytes, reason: str) -> RemovedItem:
    return RemovedItem(filename, declared, sniff(data), len(data), sha256_hex(data), reason)


def _blob_item(blob: Blob) -> RemovedItem:
    return make_item(blob.filename, blob.declared_type, blob.data, blob.reason)


@dataclass
class _Piece:
    part: email.message.Message
    kind: str  # "plain" or "html"
    text: str
    items: list[RemovedItem] = field(default_factory=list)


class _Walker:
    """One pass over ``msg.walk()``, building pieces and removed items."""

    def __init__(self, check=None) -> None:
        self.check = check or (lambda: None)  # raises when the CPU budget is spent
        self.parent: dict[int, email.message.Message] = {}
        self.cut: set[int] = set()
        self.entries: list[RemovedItem | _Piece] = []
        self.defects: list[str] = []
        self.bulk = None

    def run(self, msg: email.message.Message) -> None:
        self.bulk = getattr(msg, "portal_bulk", None)  # base64 runs kept out of the parse
        walk = msg.walk()
        while True:
            try:
                part = next(walk)
            except StopIteration:
                return
            except Exception as exc:  # RecursionError on absurd nesting
                self._defect(f"StripError:{type(exc).__name__}")
                self.entries.append(make_item(None, content_type(msg), b"", "malformed-message"))
                return
            self.check()
            self._register(part)
            if not self._under_cut(part):
                try:
                    self._visit(part)
                except (OverBudget, NeedFullParse):
                    raise
                except Exception as exc:
                    self._defect(f"StripError:{type(exc).__name__}")
                    self._remove(part, "malformed-part", subtree=True)
            self._note_defects(part)  # after decoding, which adds defects

    # -- bookkeeping ------------------------------------------------------
    def _defect(self, name: str) -> None:
        if name not in self.defects:
            self.defects.append(name)

    def _register(self, part: email.message.Message) -> None:
        try:
            children = part.get_payload() if part.is_multipart() else []
            for child in children if isinstance(children, list) else []:
                self.parent[id(child)] = part
        except Exception as exc:
            self._defect(f"StripError:{type(exc).__name__}")

    def _note_defects(self, part: email.message.Message) -> None:
        try:
            for d in list(getattr(part, "defects", ())):
                self._defect(type(d).__name__)
        except Exception:
            pass

    def _under_cut(self, part: email.message.Message) -> bool:
        node = self.parent.get(id(part))
        while node is not None:
            if id(node) in self.cut:
                return True
            node = self.parent.get(id(node))
        return False

    def _remove(self, part, reason: str, subtree: bool = False) -> None:
        summary = self._summary(part, subtree)
        if summary is None:
            data = subtree_bytes(part) if subtree else payload_bytes(part)
            summary = Summary(len(data), sha256_hex(data), sniff(data))
        if subtree:
            self.cut.add(id(part))
        sniffed = summary.sniffed
        if sniffed == "application/vnd.ms-tnef" and reason in ("attachment", "non-text-part"):
            reason = "tnef"
        item = RemovedItem(filename_of(part), content_type(part), sniffed,
                           summary.size, summary.sha256, reason)
        self.entries.append(item)

    def _summary(self, part, subtree: bool) -> Summary | None:
        """A removed leaf whose body was kept out of the parse is summarised from the raw
        bytes as it streams; a container holding such a body needs the whole parse."""
        if self.bulk is None:
            return None
        if part.is_multipart():
            if any(self.bulk.holds_run(p) for p in part.walk() if not p.is_multipart()):
                raise NeedFullParse("a run inside a container removed whole")
            return None
        return self.bulk.summary(part)

    # -- classification ---------------------------------------------------
    def _visit(self, part: email.message.Message) -> None:
        if _ambiguous(part):  # parsers disagree on which header wins: a smuggling trick
            self._remove(part, "ambiguous-headers", subtree=part.is_multipart())
            return
        ctype = content_type(part)
        maintype, _, subtype = ctype.partition("/")
        disp = disposition(part)
        name = filename_of(part)
        if maintype == "multipart":
            if not part.is_multipart():
                self._remove(part, "malformed-multipart")
            elif disp not in (None, "inline") or name:
                self._remove(part, "attachment", subtree=True)
            return
        if maintype == "message" or part.is_multipart():
            reason = _MESSAGE_REASONS.get(ctype, "non-text-part")
            self._remove(part, reason, subtree=part.is_multipart())
            return
        reason = _leaf_reason(maintype, subtype, ctype, disp, name)
        if reason:
            self._remove(part, reason)
        else:
            self._text_part(part, subtype)

    def _text_part(self, part: email.message.Message, subtype: str) -> None:
        if self.bulk is not None and self.bulk.holds_run(part):
            raise NeedFullParse("a run inside a text part")
        data = payload_bytes(part)
        sniffed = sniff(data)
        if sniffed in DISGUISED_TEXT:
            self._remove(part, "text-part-not-allowed")
        elif sniffed == "application/vnd.ms-tnef":
            self._remove(part, "tnef")
        elif not is_texty(sniffed):
            self._remove(part, "binary-in-text-part")
        else:
            text, codec = decode_text(data, charset_of(part, data, subtype == "html"))
            piece, leftover = _make_piece(part, subtype, text, codec, self.check)
            if has_binary_chars(leftover):
                self._remove(part, "binary-in-text-part")
            else:
                self.entries.append(piece)


_SINGLE_HEADERS = ("Content-Type", "Content-Transfer-Encoding", "Content-Disposition")


def _ambiguous(part: email.message.Message) -> bool:
    """A part with two Content-Type (or -Transfer-Encoding, -Disposition) headers."""
    return any(len(part.get_all(name) or ()) > 1 for name in _SINGLE_HEADERS)


def _leaf_reason(maintype: str, subtype: str, ctype: str, disp: str | None,
                 name: str | None) -> str | None:
    """Why a non-container part must go, or None if it may hold text."""
    if ctype in TNEF_TYPES or (name or "").strip().lower() == "winmail.dat":
        return "tnef"
    if disp not in (None, "inline"):  # attachment, or a misspelt/unknown value
        return "attachment"
    if maintype == "image":
        return "inline-image"
    if name:
        return "attachment"
    if maintype != "text":
        return "non-text-part"
    if subtype not in ("plain", "html"):
        return "text-part-not-allowed"
    return None


def _make_piece(part, subtype: str, text: str, codec: str,
                check=None) -> tuple[_Piece, str]:
    """Text piece of a kept part, and the text to judge for binary content
    (the plain text with embedded blocks cut out, or the HTML source)."""
    blobs: list[Blob] = []
    if subtype == "html":
        text, blobs = cut_blobs(text, codec, line_blocks_only=True)
        leftover = text
        text, found = html_to_text(text, check)
        blobs += found
    text, more = cut_blobs(text, codec)
    if subtype != "html":
        leftover = text
    items: list[RemovedItem] = []
    seen: set[tuple] = set()
    for blob in blobs + more:  # the same block repeated is logged once
        key = (blob.reason, blob.filename, sha256_hex(blob.data))
        if key not in seen:
            seen.add(key)
            items.append(_blob_item(blob))
    return _Piece(part, subtype, _tidy(clean_text(text)), items), leftover


def _tidy(text: str) -> str:
    """Collapse runs of blank lines and trim blank lines at both ends."""
    lines = [line.rstrip() if not line.strip() else line for line in text.split("\n")]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines))
    return text.strip("\n")


# -- choosing among multipart/alternative branches -------------------------

def _alt_path(piece: _Piece, parent: dict) -> list[tuple[int, int]]:
    """(alternative id, branch id) for every alternative above *piece*."""
    path = []
    child = piece.part
    node = parent.get(id(child))
    while node is not None:
        if content_type(node) == "multipart/alternative":
            path.append((id(node), id(child)))
        child, node = node, parent.get(id(node))
    return path


def _choose(pieces: list[_Piece], parent: dict) -> set[int]:
    """ids of the pieces whose text is used."""
    paths = {id(p): _alt_path(p, parent) for p in pieces}
    branches: dict[int, dict[int, list[_Piece]]] = {}
    for p in pieces:
        for alt, branch in paths[id(p)]:
            branches.setdefault(alt, {}).setdefault(branch, []).append(p)
    chosen_branch = {}
    for alt, by_branch in branches.items():
        def score(branch_id, ps=by_branch):
            kinds = {p.kind for p in ps[branch_id] if p.text.strip()}
            return 2 if "plain" in kinds else 1 if "html" in kinds else 0
        order = list(by_branch)  # insertion order == document order
        best = max(score(b) for b in order)
        chosen_branch[alt] = [b for b in order if score(b) == best][-1]
    return {id(p) for p in pieces
            if all(chosen_branch.get(alt) == br for alt, br in paths[id(p)])}


def _finish(walker: _Walker) -> Stripped:
    pieces = [e for e in walker.entries if isinstance(e, _Piece)]
    chosen = _choose(pieces, walker.parent)
    chosen_keys = {(i.reason, i.filename, i.sha256)
                   for p in pieces if id(p) in chosen for i in p.items}
    removed: list[RemovedItem] = []
    texts: list[_Piece] = []
    for entry in walker.entries:
        if isinstance(entry, RemovedItem):
            removed.append(entry)
            continue
        if id(entry) in chosen:
            removed.extend(entry.items)
            if entry.text.strip():
                texts.append(entry)
        else:
            removed.extend(i for i in entry.items
                           if (i.reason, i.filename, i.sha256) not in chosen_keys)
    text = "\n\n".join(p.text for p in texts)
    html_only = bool(texts) and all(p.kind == "html" for p in texts)
    return Stripped(text, tuple(removed), html_only, tuple(walker.defects))


def strip_message(msg: email.message.EmailMessage, check=None) -> Stripped:
    """The patient's text and the log of everything removed.  Never raises, except what
    `check` (called between parts: a CPU budget) raises."""
    try:
        return _strip(msg, check)
    except NeedFullParse:  # a long base64 run is needed as it is: parse the whole message
        return _strip(msg.portal_bulk.reparse(), check)


def _strip(msg: email.message.EmailMessage, check=None) -> Stripped:
    walker = _Walker(check)
    try:
        walker.run(msg)
        return _finish(walker)
    except (OverBudget, NeedFullParse):
        raise
    except Exception as exc:  # last resort: drop everything, log that we did
        defects = tuple(walker.defects) + (f"StripError:{type(exc).__name__}",)
        try:
            item = make_item(None, "application/octet-stream", b"", "malformed-message")
        except Exception:
            item = RemovedItem(None, "application/octet-stream", "application/x-empty",
                               0, sha256_hex(b""), "malformed-message")
        return Stripped("", (item,), False, defects)
