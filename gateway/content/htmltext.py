"""HTML to readable plain text, with the standard library's ``html.parser``.

:func:`html_to_text` returns the text and the embedded images it found:

* Paragraphs, headings, lists, tables, ``<pre>`` and ``<blockquote>`` keep
  their shape: blank lines between blocks, ``<br>`` as a line break, list
  items as ``- item`` / ``1. item``, table cells separated by two spaces,
  blockquotes prefixed with ``> ``, ``<hr>`` as a dashed line.
* ``script``, ``style``, ``title``, ``template``, ``svg``, ``math``,
  ``object``, ``iframe`` and Outlook's ``xml`` islands are dropped; comments
  and conditional comments too.
* Links keep their text only (the URL is not copied); images leave nothing
  (no alt text: the image itself has been removed).
* Every ``data:`` URI in any attribute or in CSS ``url()`` becomes a
  ``data-uri`` blob with its decoded bytes.  Every remote image (``http:``,
  ``https:`` or protocol-relative URL in ``img``/``input``/``image`` src,
  ``srcset``, ``background``, ``poster``, or CSS ``url()``) becomes a
  ``remote-image`` blob: it is never fetched, so its data is empty (size 0,
  SHA-256 of no bytes); its file name is the URL's last path segment or None,
  its declared type is guessed from that name's extension, else ``image/*``.
  The same URL is logged once per HTML part.

If ``html.parser`` gives up on broken markup, a crude tag-stripping fallback
is used, so the function never raises.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser
from urllib.parse import unquote, urlsplit

from gateway.content.budget import OverBudget
from gateway.content.inline import Blob, decode_data_uri
from gateway.content.sniff import guess_type

_SKIP = frozenset({"script", "style", "title", "template", "svg", "math",
                   "object", "iframe", "xml"})
_BREAK2 = frozenset({"p", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "dl",
                     "table", "blockquote", "pre", "address", "figure", "form",
                     "fieldset"})
_BREAK1 = frozenset({"div", "li", "tr", "dt", "dd", "section", "article",
                     "header", "footer", "nav", "aside", "main", "center",
                     "caption", "option", "figcaption", "legend"})
_IMG_TAGS = frozenset({"img", "input", "image", "video", "source", "picture"})
_IMG_ATTRS = frozenset({"src", "srcset", "background", "poster", "dynsrc",
                        "lowsrc", "href", "xlink:href"})
_WS = re.compile(r"[ \t\n\r\f\v\xa0]+")
# Linear by construction (possessive quantifiers; an unquoted value stops at "(" as well,
# so a run of "url(url(url(" is scanned once, not once per "url(").
_CSS_URL = re.compile(r"""url\(\s*+(?:"([^"]*+)"|'([^']*+)'|([^()'"]*+))\s*+\)""",
                      re.IGNORECASE)
_CRUDE_SKIP = re.compile(r"<(script|style|title|head)\b", re.IGNORECASE)
_CRUDE_BREAK = re.compile(r"<br\s*+/?>|</(?:p|div|li|tr|h[1-6])\s*+>", re.IGNORECASE)
_CRUDE_TAG = re.compile(r"<[^<>]*+>")
_CRUDE_DATA = re.compile(r"data:[^\s\"'<>()]++", re.IGNORECASE)
CHUNK = 64 * 1024  # HTML is fed to the parser in pieces, the CPU budget checked between


class _ImageCollector:
    """Collects data: URIs and remote image URLs as blobs."""

    def __init__(self) -> None:
        self.blobs: list[Blob] = []
        self._seen: set[str] = set()

    def data_uri(self, value: str) -> None:
        blob = decode_data_uri(value)
        if blob is not None:
            self.blobs.append(blob)

    def remote(self, url: str) -> None:
        url = url.strip()
        if url in self._seen:
            return
        self._seen.add(url)
        try:
            path = urlsplit(url if "://" in url else "http:" + url).path
        except ValueError:
            path = ""
        name = unquote(path.rsplit("/", 1)[-1], errors="replace") or None
        self.blobs.append(Blob(name, guess_type(name, "image/*"), b"", "remote-image"))

    def url(self, value: str, image_context: bool) -> None:
        v = value.strip()
        low = v[:8].lower()
        if low.startswith("data:"):
            self.data_uri(v)
        elif image_context and low.startswith(("http://", "https://", "//")):
            self.remote(v)

    def css(self, text: str) -> None:
        for m in _CSS_URL.finditer(text):
            self.url(m.group(1) or m.group(2) or m.group(3) or "", True)

    def attrs(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if not value:
                continue
            if name == "style":
                self.css(value)
            elif name == "srcset":
                for cand in value.split(","):
                    self.url(cand.strip().split(" ")[0], True)
            else:
                image = name == "background" or (
                    tag in _IMG_TAGS and name in _IMG_ATTRS)
                self.url(value, image)


class _Converter(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.images = _ImageCollector()
        self.lines: list[str] = []
        self._buf: list[str] = []
        self._breaks = 0
        self._break_quote = 0
        self._skip: list[str] = []
        self._pre = 0
        self._quote = 0
        self._lists: list[list] = []  # [kind, counter]
        self._bullet = ""

    # -- output -----------------------------------------------------------
    def _prefix(self) -> str:
        return "> " * self._quote

    def _end_line(self) -> None:
        self.lines.append("".join(self._buf).rstrip())
        self._buf = []

    def _start_text(self) -> None:
        if self._breaks and (self._buf or self.lines):
            self._end_line()
            blank = ("> " * min(self._break_quote, self._quote)).rstrip()
            self.lines.extend([blank] * (self._breaks - 1))
        self._breaks = 0
        if not self._buf:
            indent = "  " * max(len(self._lists) - 1, 0) if self._bullet else ""
            self._buf.append(self._prefix() + indent + self._bullet)
            self._bullet = ""

    def _emit(self, text: str) -> None:
        if self._skip or not text:
            return
        if self._pre:
            self._emit_pre(text)
            return
        text = _WS.sub(" ", text)
        at_start = not self._buf or self._breaks or self._buf[-1].endswith(" ")
        if at_start:
            text = text.lstrip(" ")
        if not text:
            return
        self._start_text()
        self._buf.append(text)

    def _emit_pre(self, text: str) -> None:
        text = text.replace("\r\n", "\n").replace("\xa0", " ")
        first, *rest = text.split("\n")
        self._start_text()
        self._buf.append(first)
        for line in rest:
            self._end_line()
            self._buf.append(self._prefix() + line)

    def _request(self, n: int) -> None:
        if not self._breaks:
            self._break_quote = self._quote
        self._breaks = max(self._breaks, n)

    # -- parser callbacks -------------------------------------------------
    def handle_starttag(self, tag, attrs):
        self.images.attrs(tag, attrs)
        if tag in _SKIP:
            self._skip.append(tag)
        self._block(tag, True)

    def handle_startendtag(self, tag, attrs):
        self.images.attrs(tag, attrs)
        if tag not in _SKIP:
            self._block(tag, True)

    def handle_endtag(self, tag):
        if tag in self._skip:
            while self._skip and self._skip.pop() != tag:
                pass
            return
        self._block(tag, False)

    def handle_data(self, data):
        if self._skip and self._skip[-1] == "style":
            self.images.css(data)
        self._emit(data)

    def _block(self, tag: str, start: bool) -> None:
        if self._skip:
            return
        if tag == "br" and start:
            self._start_text()
            self._request(1)
        elif tag == "hr" and start:
            self._request(2)
            self._emit("-" * 20)
            self._request(2)
        elif tag in ("td", "th") and start and self._buf and not self._breaks:
            self._buf.append("  ")
        elif tag in _BREAK2 or tag in _BREAK1:
            nested_list = tag in ("ul", "ol") and len(self._lists) > (0 if start else 1)
            self._request(2 if tag in _BREAK2 and not nested_list else 1)
            self._structure(tag, start)

    def _structure(self, tag: str, start: bool) -> None:
        if tag == "pre":
            self._pre = max(self._pre + (1 if start else -1), 0)
        elif tag == "blockquote":
            self._quote = max(self._quote + (1 if start else -1), 0)
            self._break_quote = min(self._break_quote, self._quote)
        elif tag in ("ul", "ol"):
            if start:
                self._lists.append([tag, 0])
            elif self._lists:
                self._lists.pop()
        elif tag == "li" and start:
            kind = self._lists[-1] if self._lists else ["ul", 0]
            kind[1] += 1
            self._bullet = f"{kind[1]}. " if kind[0] == "ol" else "- "

    def finish(self) -> str:
        if self._buf:
            self._end_line()
        return "\n".join(self.lines)


def _drop_skipped(markup: str) -> str:
    """`markup` without script/style/title/head elements (linear: str.find)."""
    out, pos, low = [], 0, markup.lower()
    while True:
        m = _CRUDE_SKIP.search(markup, pos)
        if m is None:
            out.append(markup[pos:])
            return " ".join(out)
        out.append(markup[pos:m.start()])
        end = low.find("</" + m.group(1).lower(), m.end())
        if end < 0:
            return " ".join(out)
        close = low.find(">", end)
        pos = len(markup) if close < 0 else close + 1


def _crude_text(markup: str) -> str:
    text = _CRUDE_BREAK.sub("\n", _drop_skipped(markup))
    text = html.unescape(_CRUDE_TAG.sub(" ", text))
    return "\n".join(_WS.sub(" ", line).strip() for line in text.split("\n"))


def html_to_text(markup: str, check=None) -> tuple[str, list[Blob]]:
    """Readable text of an HTML document, and its data: URIs / remote images.
    `check` is called between chunks (a CPU budget); it may raise."""
    conv = _Converter()
    try:
        for start in range(0, len(markup), CHUNK):
            conv.feed(markup[start:start + CHUNK])
            if check is not None:
                check()
        conv.close()
        return conv.finish(), conv.images.blobs
    except OverBudget:
        raise
    except Exception:  # _markupbase may raise AssertionError on odd markup
        blobs = list(conv.images.blobs)
        for m in _CRUDE_DATA.finditer(markup):
            blob = decode_data_uri(m.group(0))
            if blob is not None:
                blobs.append(blob)
        return _crude_text(markup), blobs
