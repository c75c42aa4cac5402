"""Mail written straight to bytes (gateway.mail_bytes) is byte for byte the mail the
message object gives: every template, every language, one and several languages, header
values that need encoding or folding, texts with long lines, non-ASCII and odd line
breaks; the same Date, Message-ID and boundary in both."""
from __future__ import annotations

import email.utils
import itertools

import pytest

from gateway import mail_bytes, notices as notices_module
from gateway.checks import SAMPLE
from gateway.notices import Notices, as_bytes
from tests.conftest import ROOT

NOTICES = Notices(ROOT / "templates", "America/Los_Angeles")
HEADERS = {"Reply-To": "reply+abc@portal.example.org", "Auto-Submitted": "auto-replied",
           "X-Portal-Message": "M-12", "X-Portal-Rules": "rule-one:1.00 " * 12,
           "X-Portal-Language": "es", "In-Reply-To": "<a@b>", "References": "<a@b> <c@d>",
           "X-Test-Encoded": "=?utf-8?q?x?= caf\u00e9 " + "long " * 20,
           "X-Test-Breaks": "one\r\ntwo\nthree\tfour", "X-Test-Empty": ""}
TEXTS = ["Sample text",
         "Caf\u00e9 \u201cquoted\u201d \u2014 " + "x" * 200 + "\n\n= trailing space \n",
         "line\r\nwith\rodd\x0bbreaks\u2028and\u0085more\n" + ("word " * 40 + "\n") * 3,
         "", "\n\n", "tab\tend\t\n.dot\nFrom the start\n"]


def _same_randomness(monkeypatch):
    """The same Message-IDs, Date and boundaries for each way of building."""
    state = {}

    def reset():
        state["ids"], state["marks"] = itertools.count(), itertools.count()
    monkeypatch.setattr(email.utils, "make_msgid",
                        lambda domain=None: f"<m{next(state['ids'])}@{domain}>")
    monkeypatch.setattr(email.utils, "format_datetime",
                        lambda _: "Wed, 02 Dec 2026 01:00:00 +0000")
    monkeypatch.setattr(notices_module._Generator, "_make_boundary", classmethod(
        lambda cls, text=None: "=" * 15 + f"{next(state['marks']):020d}" + "=="))
    return reset


def _both(reset, name, monkeypatch=None, **kw):
    """(the message object's bytes, build_bytes); with MONKEYPATCH build_bytes must not
    fall back to the message object."""
    reset()
    slow = as_bytes(NOTICES.build(name, **kw))
    reset()
    if monkeypatch is not None:
        def fell_back(msg):
            raise AssertionError("build_bytes fell back to the message object")
        monkeypatch.setattr(notices_module, "as_bytes", fell_back)
    fast = NOTICES.build_bytes(name, **kw)
    if monkeypatch is not None:
        monkeypatch.setattr(notices_module, "as_bytes", as_bytes)
    return slow, fast


def _cases():
    for lang in ["en", *NOTICES.locales()]:
        for name in NOTICES.names(lang):
            yield name, lang


@pytest.mark.parametrize("name,lang", list(_cases()))
def test_every_template_is_the_same_bytes(monkeypatch, name, lang):
    reset = _same_randomness(monkeypatch)
    for text, languages in itertools.product(TEXTS, [lang, [lang, "en"]]):
        context = {**SAMPLE, "text": text, "subject": "R\u00e9: " + text[:120],
                   "patient_name": "Jos\u00e9 \"N\u00fa\u00f1ez\", Jr."}
        slow, fast = _both(reset, name, monkeypatch, sender='"Sunrise, Clinic" <portal@portal.example.org>',
                           to="Jos\u00e9 <ana@example.com>", domain="portal.example.org",
                           headers=HEADERS, lang=languages, **context)
        assert fast == slow


def test_headers_the_library_treats_specially_take_its_way(monkeypatch):
    """A caller's Content-*, MIME-Version or duplicate header: the message object's bytes
    (or its error), as before."""
    reset = _same_randomness(monkeypatch)
    assert not mail_bytes.usable({"Content-Language": "en"})
    assert not mail_bytes.usable({"X-A": "1", "x-a": "2"})
    assert not mail_bytes.usable({"Message-ID": "<x@y>"})
    kw = dict(sender="portal@portal.example.org", to="ana@example.com",
              domain="portal.example.org", **SAMPLE)
    slow, fast = _both(reset, "ack", headers={"Content-Description": "x",
                                              "MIME-Version": "1.0"}, **kw)
    assert fast == slow
    slow, fast = _both(reset, "staff_copy", headers={"Content-Type": "text/x-odd"}, **kw)
    assert fast == slow
    for build in (NOTICES.build, NOTICES.build_bytes):
        with pytest.raises(ValueError):  # a second To
            build("staff_copy", headers={"to": "b@example.com"}, **kw)


def test_a_text_that_cannot_be_encoded_fails_as_before(monkeypatch):
    kw = dict(sender="portal@portal.example.org", to="ana@example.com",
              domain="portal.example.org", **{**SAMPLE, "text": "lone \udc80 surrogate"})
    with pytest.raises(UnicodeEncodeError):
        NOTICES.build("staff_copy", **kw)
    with pytest.raises(UnicodeEncodeError):
        NOTICES.build_bytes("staff_copy", **kw)
