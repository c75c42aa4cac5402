"""Split a patient's reply into the new text and the set-aside history.

Set aside: quoted earlier messages (Gmail/Apple "On ... wrote:", Spanish
"El ... escribió:", Outlook "-----Original Message-----" and "From:/Sent:"
header blocks, "> " lines) and signatures ("-- " separator, "Sent from my
iPhone", "Enviado desde mi iPhone", name/phone blocks at the end).

Nothing is dropped: every line of the input ends up in exactly one of the two
parts, in its original order, so staff can be shown both.  The trimmer is
deliberately conservative: when unsure, a line stays in the new text, because
only the new text is classified (a hidden "I'm bleeding" is the worst case).
"""
from __future__ import annotations

import re

_I = re.IGNORECASE
_ATTRIBUTION = re.compile(
    r"^\s*(?:"
    r"on\b.{0,300}\bwrote\s*:"
    r"|el\b.{0,300}\bescribi[oó]\s*:"
    r"|le\b.{0,300}\ba\s+[ée]crit\s*:"
    r"|am\b.{0,300}\bschrieb\b.{0,100}:"
    r"|.{0,300}<[^<>\s]+@[^<>\s]+>\)?\s*(?:wrote|escribi[oó])\s*:"
    r")\s*$", _I)
_SEPARATOR = re.compile(
    r"^\s*(?:-{2,}\s*(?:original message|mensaje original|forwarded message|"
    r"mensaje reenviado|message d'origine)\s*-{2,}"
    r"|begin forwarded message\s*:|inicio del mensaje reenviado\s*:)\s*$", _I)
_HEADER_FROM = re.compile(r"^\s*\*?(?:from|de)\s*:\*?\s*\S", _I)
_HEADER_OTHER = re.compile(
    r"^\s*\*?(?:sent|date|to|cc|subject|enviado(?: el)?|fecha|para|asunto)\s*:\*?", _I)
_UNDERSCORES = re.compile(r"^\s*_{10,}\s*$")
_QUOTED = re.compile(r"^\s*>")
_SIG_DASHES = re.compile(r"^(?:-- ?|—|__)$")
_MOBILE_SIG = re.compile(
    r"^\s*(?:sent from my\b|sent from (?:mail|outlook|yahoo|gmail|samsung)\b|"
    r"sent via\b|sent with\b|get outlook for\b|enviado desde mi\b|"
    r"enviado desde (?:outlook|yahoo|correo)\b|obtener outlook para\b|"
    r"envoy[ée] de mon\b).{0,80}$", _I)
_VALEDICTION = re.compile(
    r"^\s*(?:thanks?(?: you)?(?: so much| very much)?(?: again)?|thx|ty|best(?: regards| wishes)?|"
    r"regards|kind regards|warm regards|warmly|sincerely(?: yours)?|cheers|respectfully|"
    r"take care|blessings|love|(?:muchas )?gracias|saludos(?: cordiales)?|un saludo|"
    r"atentamente|cordialmente|bendiciones)\s*+[,.!\-]*+\s*+$", _I)
_PHONE = re.compile(
    r"^[\w .:#/()+-]{0,20}?\(?\+?\d{0,2}[\s.-]?\(?\d{3}\)?[\s.-]?\d{3}[\s.-]?\d{4}"
    r"(?:\s*(?:x|ext\.?)\s*\d+)?\s*$", _I)
_EMAIL_LINE = re.compile(r"^\s*(?:e-?mail\s*:\s*)?[\w.+-]+@[\w-]+(?:\.[\w-]+)+\s*$", _I)
_ID_LINE = re.compile(
    r"^\s*(?:dob|d\.o\.b\.|date of birth|fecha de nacimiento|mrn|acct|account|cuenta|"
    r"patient id|id)\b(?:\s*+[#:.])?[\w/ .-]{1,25}$", _I)
_NAME = re.compile(
    r"^\s*(?:(?:mr|mrs|ms|miss|dr|sra?|srta)\.?\s+)?"
    r"[A-ZÁÉÍÓÚÑ][a-záéíóúñü'’-]+\.?(?:\s+(?:[A-ZÁÉÍÓÚÑ]\.|[A-ZÁÉÍÓÚÑ][a-záéíóúñü'’-]+)){0,3}\s*$")
# A "name" line with one of these words is content, never a signature.
_NOT_A_NAME = re.compile(
    r"(?i)\b(?:bleed\w*|blood|water\w*|broke\w*|pain\w*|baby|help|urgent|emergenc\w*|"
    r"fever|contraction\w*|labou?r|sangr\w*|fuente|beb[eé]|dolor|ayuda|urgente|please|call)\b")
_MAX_SIG_LINES = 6


def split_reply(text: str) -> tuple[str, str]:
    """Return (new_text, history); together they keep every line of *text*."""
    lines = (text or "").replace("\r\n", "\n").replace("\r", "\n").split("\n")
    hist = [False] * len(lines)
    _mark_quotes(lines, hist)
    unsigned = list(hist)
    _mark_signatures(lines, hist)
    if not any(line.strip() for line, h in zip(lines, hist) if not h):
        # All of it looked like a signature: then it is the message ("Maria Lopez,
        # 555-123-4567"), except a device's own line ("Sent from my iPhone"), which
        # says nothing: the new text is then empty and the Subject tells the message.
        hist = [h or bool(_MOBILE_SIG.match(line)) for line, h in zip(lines, unsigned)]
    new = "\n".join(l for l, h in zip(lines, hist) if not h)
    old = "\n".join(l for l, h in zip(lines, hist) if h)
    return _tidy(new), _tidy(old)


def _tidy(block: str) -> str:
    return re.sub(r"\n{3,}", "\n\n", "\n".join(l.rstrip() for l in block.split("\n"))).strip("\n")


def _attribution_len(lines: list[str], i: int) -> int:
    """Number of lines (1-3) an "On ... wrote:" attribution at line i spans, or 0."""
    joined = ""
    for k in range(i, min(i + 3, len(lines))):
        if k > i and not lines[k].strip():
            break
        joined = (joined + " " + lines[k].strip()).strip()
        if len(joined) > 400:
            break
        if _ATTRIBUTION.match(joined):
            return k - i + 1
    return 0


def _is_header_block(lines: list[str], i: int) -> bool:
    """An Outlook-style "From: / Sent: / To: / Subject:" block starts at line i."""
    start = i + 1 if _UNDERSCORES.match(lines[i]) else i
    if start >= len(lines) or not _HEADER_FROM.match(lines[start]):
        return False
    following = lines[start + 1:start + 6]
    return sum(1 for l in following if _HEADER_OTHER.match(l)) >= 2


def _mark_quotes(lines: list[str], hist: list[bool]) -> None:
    i, n = 0, len(lines)
    while i < n:
        if _SEPARATOR.match(lines[i]) or _is_header_block(lines, i):
            _mark(hist, i, n)
            return
        span = _attribution_len(lines, i)
        if span:
            j = i + span
            while j < n and not lines[j].strip():
                j += 1
            if j < n and _QUOTED.match(lines[j]):
                while j < n and (_QUOTED.match(lines[j]) or not lines[j].strip()):
                    j += 1
                _mark(hist, i, j)
                i = j
                continue
            _mark(hist, i, n)
            return
        if _QUOTED.match(lines[i]):
            hist[i] = True
        i += 1


def _mark(hist: list[bool], start: int, end: int) -> None:
    for k in range(start, end):
        hist[k] = True


def _runs(hist: list[bool]) -> list[tuple[int, int]]:
    """Maximal runs [start, end) of lines that are still new text."""
    runs, start = [], None
    for k, h in enumerate(hist + [True]):
        if not h and start is None:
            start = k
        elif h and start is not None:
            runs.append((start, k))
            start = None
    return runs


def _mark_signatures(lines: list[str], hist: list[bool]) -> None:
    for start, end in _runs(hist):
        for k in range(start, end):
            if _SIG_DASHES.match(lines[k].rstrip()) and k > start:
                _mark(hist, k, end)
                end = k
                break
        for k in range(start, end):
            if _MOBILE_SIG.match(lines[k]):
                hist[k] = True
        _mark_trailing_block(lines, hist, start, end)


def _contact_line(line: str) -> bool:
    return bool(_PHONE.match(line) or _EMAIL_LINE.match(line) or _ID_LINE.match(line))


def _mark_trailing_block(lines: list[str], hist: list[bool], start: int, end: int) -> None:
    """Set aside a closing name/phone block, e.g. "Thanks,\\nMaria Lopez\\n555-123-4567"."""
    block: list[int] = []
    k = end - 1
    while k >= start and len(block) <= _MAX_SIG_LINES:
        line = lines[k]
        if hist[k] or not line.strip():
            k -= 1
            continue
        if not (_contact_line(line) or (_NAME.match(line) and not _NOT_A_NAME.search(line))):
            break
        block.append(k)
        k -= 1
    if not block or len(block) > _MAX_SIG_LINES:
        return
    while k >= start and (hist[k] or not lines[k].strip()):
        k -= 1
    after_valediction = k >= start and bool(_VALEDICTION.match(lines[k]))
    has_contact = any(_contact_line(lines[b]) for b in block)
    if k < start and not has_contact:
        return  # the whole text would be a bare name: keep it
    if after_valediction or has_contact:
        for b in block:
            hist[b] = True
