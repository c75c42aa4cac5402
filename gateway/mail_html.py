"""The HTML alternative of a patient mail, built from its own text (one source of words).

A blank line separates blocks.  A block whose lines all start with ``-`` or ``*`` is a
list; any other block is a paragraph (its line breaks kept).  Everything is escaped; only
the URLs the gateway itself put in the mail (the portal and enrollment links) become
links, so a URL in a patient's subject or a file name stays plain text.  Long words wrap
instead of widening the page, so the mail fits a phone screen.
"""
from __future__ import annotations

import html
import re

_ITEM = re.compile(r"^\s*[-*]\s+")
_RULE = re.compile(r"^\s*[-_=*]{5,}\s*$")
HR = '<hr style="border:0;border-top:1px solid #999;margin:1.5em 0">'
STYLE = ("font-family:system-ui,-apple-system,'Segoe UI',Roboto,Arial,sans-serif;"
         "font-size:16px;line-height:1.5;color:#1a1a1a;max-width:40rem;margin:0;"
         "padding:0 4px;overflow-wrap:anywhere;word-break:break-word")


def _inline(line: str, links: frozenset) -> str:
    escaped = html.escape(line, quote=True)
    for url in sorted(links, key=len, reverse=True):
        e = html.escape(url, quote=True)
        if e and e in escaped:
            escaped = escaped.replace(e, f'<a href="{e}">{e}</a>')
    return escaped


def _block(lines: list[str], links: frozenset) -> str:
    if len(lines) == 1 and _RULE.match(lines[0]):
        return HR
    if all(_ITEM.match(line) for line in lines):
        items = "".join(f"<li>{_inline(_ITEM.sub('', line), links)}</li>" for line in lines)
        return f'<ul style="padding-left:1.25em;margin:0 0 1em">{items}</ul>'
    body = "<br>".join(_inline(line.strip(), links) for line in lines)
    return f'<p style="margin:0 0 1em">{_shout(body)}</p>'


def _shout(body: str) -> str:
    """A paragraph that opens with a sentence in capitals ("IF THIS IS AN EMERGENCY, CALL
    911.") shows that sentence in bold."""
    m = re.match(r"([^.!?<]{10,}?[.!?])(\s|$)", body)
    if m and m.group(1) == m.group(1).upper() and sum(c.isalpha() for c in m.group(1)) > 8:
        return f"<strong>{m.group(1)}</strong>{body[m.end(1):]}"
    return body


def blocks(text: str) -> list[list[str]]:
    out: list[list[str]] = []
    for chunk in re.split(r"\n\s*\n", text.replace("\r\n", "\n")):
        lines: list[str] = []
        for line in (x for x in chunk.split("\n") if x.strip()):
            if _RULE.match(line):  # a separator line stands alone
                out += [lines, [line]] if lines else [[line]]
                lines = []
            else:
                lines.append(line)
        if lines:
            out.append(lines)
    return out


def section(text: str, lang: str, links=()) -> str:
    """One language's text as HTML (a <div lang=...>)."""
    found = frozenset(u for u in links if u)
    inner = "\n".join(_block(b, found) for b in blocks(text))
    return f'<div lang="{html.escape(lang)}">\n{inner}\n</div>'


def document(sections: list[tuple[str, str]], links=()) -> str:
    """A whole HTML mail from [(lang, text), ...]; the first language is the page's."""
    lang = html.escape(sections[0][0]) if sections else "en"
    parts = f"\n{HR}\n".join(
        section(text, code, links) for code, text in sections)
    return ("<!doctype html>\n"
            f'<html lang="{lang}"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'</head>\n<body style="margin:0;padding:8px"><div style="{STYLE}">\n{parts}\n'
            "</div></body></html>\n")
