"""The one enrollment page template and its words per language (wording.PAGE_TEXT): every
language has every phrase, a page shows no phrase of another language, the practice name
is escaped, and check-config accepts a language folder without its own enroll.html only
when PAGE_TEXT knows the language."""
from __future__ import annotations

import re
import shutil
import types
from html import unescape
from pathlib import Path

import pytest

from gateway.checks import check_pages
from gateway.config import load_config
from gateway.enrollment import web, wording
from tests.conftest import write_config

ROOT = Path(__file__).resolve().parents[1]
CONTEXT = dict(practice_name="Smith & <Jones>", office_phone="555-0100",
               office_phone_tel="5550100", office_hours="9-5", portal_address="portal@x",
               after_hours_name="On call", after_hours_line="555-0199", token="T", csrf="C",
               account="", switch_url="/enroll", switch_lang="es", switch_name="Español",
               switch_label="Idioma")


def _page(lang: str, **kw) -> str:
    env = web.page_env(types.SimpleNamespace(cfg=types.SimpleNamespace(
        templates_dir=ROOT / "templates")))
    ctx = {**CONTEXT, "lang": lang, "text": wording.page_text(lang), **kw}
    ctx["terms_version"] = web.terms_version(env, ctx)
    html = web.page_template(env, "enroll", lang).render(**ctx)
    assert "Smith &amp; &lt;Jones&gt;" in html and "<Jones>" not in html  # escaped
    body = re.sub(r"<[^>]+>", " ", re.sub(r"<style>.*?</style>", "", html, flags=re.S))
    return " ".join(unescape(body).split())


def test_every_language_has_every_phrase_with_the_same_blanks():
    english = wording.PAGE_TEXT["en"]
    for lang, text in wording.PAGE_TEXT.items():
        assert text.keys() == english.keys(), lang
        for key, phrase in text.items():
            assert re.findall(r"{\w+}", phrase) == re.findall(r"{\w+}", english[key]), key
    assert wording.page_text("fr") is english


@pytest.mark.parametrize("proxy", [False, True])
@pytest.mark.parametrize("errors", [{}, {"account": "x"}, {"account": "x", "agree": "y"}])
def test_a_page_speaks_one_language(proxy, errors):
    for lang, other in (("en", "es"), ("es", "en")):
        page = _page(lang, proxy=proxy, errors=errors, closed=None)
        mine, theirs = wording.PAGE_TEXT[lang], wording.PAGE_TEXT[other]
        assert mine["intro_proxy" if proxy else "intro"] in page
        assert mine["agree"].split("{")[0].strip() in page
        for key in ("submit", "password", "confirm", "emergency"):
            assert theirs[key] not in page.replace(mine[key], ""), (lang, key)
        if len(errors) > 1:
            assert mine["correct_many"].format(count=len(errors)) in page


def test_a_closed_link_page_names_the_office_in_its_language():
    page = _page("es", proxy=False, errors={}, closed="cerrado")
    assert "Consultorio: 555-0100 (9-5)" in page and "Office:" not in page


def test_check_config_wants_an_enroll_page_only_for_a_language_without_words(tmp_path):
    templates = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", templates)
    cfg = load_config(write_config(tmp_path, "sqlite:///unused.db"),
                      overrides={"gateway": {"templates_dir": str(templates)}})
    assert check_pages(cfg) == []
    shutil.copytree(templates / "pages" / "es", templates / "pages" / "fr")
    problems = check_pages(cfg)
    assert len(problems) == 1 and "fr/enroll.html: missing" in problems[0]
