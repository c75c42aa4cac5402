"""Every patient-facing mail, in every language (and the bilingual emergency notice), as a
phone shows it: the HTML alternative built from the text, rendered in headless Chromium
at 390 px, must not overflow sideways, even with a long unbroken file name and subject.
Screenshots go to test-output/mail-NAME-LANG.png."""
from __future__ import annotations

import datetime as dt

import pytest

from gateway.checks import SAMPLE
from gateway.notices import Notices, is_patient_template
from tests.conftest import ROOT
from tests.test_enrollment_browser import SHOTS, browser  # noqa: F401  (fixture)

NOTICES = Notices(ROOT / "templates", "America/Los_Angeles")
PATIENT = [n for n in NOTICES.names() if is_patient_template(n)]
CASES = ([(n, ["en"]) for n in PATIENT] + [(n, ["es"]) for n in PATIENT]
         + [("emergency", ["es", "en"])])
LONG_NAME = "scan_" + "x" * 120 + ".pdf"
CONTEXT = dict(SAMPLE, removed_files=["lab.pdf", LONG_NAME, "<script>alert(1)</script>.png"],
               subject="Pregunta sobre mis resultados " + "y" * 80,
               due=dt.datetime(2026, 12, 4, 20, 31),
               answer="Hola Ana,\n\nSus resultados son normales.\n\nDra. Ruiz")


@pytest.fixture(scope="module")
def phone(browser):  # noqa: F811
    context = browser.new_context(java_script_enabled=False,
                                  viewport={"width": 390, "height": 844},
                                  device_scale_factor=2, is_mobile=True)
    yield context.new_page()
    context.close()


def build(name: str, langs: list[str]):
    return NOTICES.build(name, sender="portal@portal.example.org", to="ana@example.com",
                         domain="portal.example.org", lang=langs, **CONTEXT)


def test_every_patient_template_has_a_spanish_version():
    assert set(PATIENT) <= set(NOTICES.names("es"))
    assert len(PATIENT) >= 8


@pytest.mark.parametrize("name,langs", CASES, ids=lambda v: "-".join(v) if isinstance(
    v, list) else v)
def test_mail_fits_a_phone_screen(phone, name, langs):
    msg = build(name, langs)
    html = msg.get_body(("html",)).get_content()
    text = msg.get_body(("plain",)).get_content()
    assert "<script>" not in html  # escaped, never markup
    phone.set_content(html)
    assert phone.locator("html").get_attribute("lang") == langs[0]
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"{name} {langs}: {width}px wide"
    shown = " ".join(phone.inner_text("body").split())
    for paragraph in (p for p in text.split("\n\n") if p.strip() and "-----" not in p):
        first_words = " ".join([w for w in paragraph.split() if w not in "-*"][:4])
        assert first_words in shown, (name, first_words)  # the same words as the text
    SHOTS.mkdir(exist_ok=True)
    phone.screenshot(path=str(SHOTS / f"mail-{name}-{'-'.join(langs)}.png"), full_page=True)


@pytest.mark.parametrize("name", PATIENT)
def test_template_paragraphs_are_one_line_each(name):
    for lang in ("en", "es"):
        _, text, _ = NOTICES.render(name, lang, **CONTEXT)
        for block in text.split("\n\n"):
            prose = [x for x in block.splitlines() if len(x) > 60 and x[0].isalpha()]
            # A paragraph of prose is one line; only lists and signatures have several.
            assert len(prose) <= 1, (name, lang, block[:80])
        source = NOTICES.path(name, lang).read_text(encoding="utf-8").lower()
        assert "guideline" not in source and "pauta" not in source


def test_links_only_for_the_gateways_own_urls():
    ctx = dict(CONTEXT, subject="see https://evil.example/login")
    msg = NOTICES.build("ack", sender="p@x.org", to="a@x.org", domain="x.org", lang="en",
                        **ctx)
    html = msg.get_body(("html",)).get_content()
    assert f'href="{SAMPLE["portal_url"]}"' in html
    assert 'href="https://evil' not in html
