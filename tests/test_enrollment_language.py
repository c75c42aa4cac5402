"""The enrollment page in Spanish, in headless Chromium at phone width: an invite for a
roster patient with language = es opens the Spanish page, the language switch is visible
and works both ways, every error message is Spanish, and the page stays accessible (lang
attribute, a label for every field, text contrast of at least 4.5:1).  Screenshots go to
test-output/ (enroll-es-phone.png, enroll-es-error-phone.png, enrolled-es-phone.png,
enroll-en-switch-phone.png)."""
from __future__ import annotations

import email
import email.policy
import re

import pytest

from gateway.enrollment import wording
from gateway.enrollment.enroll import CLOSED, Form, _field_errors
from tests.conftest import maildir_files
from tests.helpers import add_patient
from tests.test_enrollment_browser import (  # noqa: F401  (fixtures)
    ADDRESS, PASSWORD, SHOTS, browser, invite_link, patient, server)

PHONE = {"width": 390, "height": 844}
CONTRAST_JS = """() => {
  const rgb = s => s.match(/[\\d.]+/g).slice(0, 3).map(Number);
  const lum = c => { const v = c.map(x => { x /= 255;
      return x <= 0.03928 ? x / 12.92 : Math.pow((x + 0.055) / 1.055, 2.4); });
    return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2]; };
  const bg = el => { for (; el; el = el.parentElement) {
      const c = getComputedStyle(el).backgroundColor;
      if (c && !c.startsWith('rgba(0, 0, 0, 0)') && c !== 'transparent') return rgb(c); }
    return [255, 255, 255]; };
  const worst = [];
  for (const el of document.querySelectorAll('h1,h2,p,li,label,a,button,strong')) {
    if (!el.innerText.trim()) continue;
    const a = lum(rgb(getComputedStyle(el).color)), b = lum(bg(el));
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < 4.5) worst.push(el.tagName + ' ' + ratio.toFixed(2));
  }
  return worst;
}"""


@pytest.fixture
def phone(browser):  # noqa: F811
    context = browser.new_context(java_script_enabled=False, viewport=PHONE,
                                  device_scale_factor=2, is_mobile=True)
    pg = context.new_page()
    yield pg
    context.close()


def spanish_link(services) -> str:
    """Invite a roster patient with language = es; the link from the (Spanish) mail."""
    add_patient(services, status="roster", language="es")
    invite_link(services)  # delivers the invite to the Maildir
    files = maildir_files(services.cfg.maildir_root, ADDRESS)
    msg = email.message_from_bytes(files[-1].read_bytes(), policy=email.policy.default)
    body = msg.get_body(("plain",)).get_content()
    assert msg["Subject"].startswith("Su invitación") and "Estimado(a) Ana Lopez:" in body
    assert "vence el" in body and " de 20" in body  # the date in Spanish words
    return re.search(r"(http://\S+/enroll\?token=[\w-]+&lang=es)", body).group(1)


def accessible(page, lang: str) -> None:
    assert page.locator("html").get_attribute("lang") == lang
    for field in ("account", "password", "confirm", "agree"):
        assert page.locator(f"label[for={field}]").count() == 1, field
    assert page.evaluate(CONTRAST_JS) == []
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]


def fill_es(page, account="1001", password=PASSWORD, confirm=None, agree=True) -> None:
    page.get_by_label("Número de cuenta de paciente").fill(account)
    page.get_by_label("Contraseña nueva", exact=True).fill(password)
    page.get_by_label("Escriba otra vez la contraseña nueva").fill(
        password if confirm is None else confirm)
    if agree:
        page.get_by_label("y las acepto").check()
    page.get_by_role("button", name="Inscribirme").click()


def test_spanish_invite_opens_the_spanish_page_and_enrolls(services, server, phone):  # noqa: F811
    link = spanish_link(services)
    assert phone.goto(link).status == 200
    assert phone.get_by_role("heading", level=1).inner_text().startswith("Inscríbase")
    assert "Condiciones del portal del paciente" in phone.inner_text("section.terms")
    assert "llame al 911" in phone.inner_text("main")
    accessible(phone, "es")
    SHOTS.mkdir(exist_ok=True)
    phone.screenshot(path=str(SHOTS / "enroll-es-phone.png"), full_page=True)
    fill_es(phone, account="9999", password="corta")
    text = phone.get_by_role("alert").inner_text()
    assert "Corrija estos 2 puntos" in text
    assert "no coincide con nuestros registros" in text and "le quedan 4 intentos antes" in text
    assert "al menos 12 caracteres (la suya tiene 5)" in text
    accessible(phone, "es")
    phone.screenshot(path=str(SHOTS / "enroll-es-error-phone.png"), full_page=True)
    fill_es(phone, confirm=PASSWORD + "x", agree=False)
    text = phone.get_by_role("alert").inner_text()
    assert "no coinciden" in text and "marque la casilla" in text
    fill_es(phone)
    assert phone.get_by_role("heading", level=1).inner_text() == "Ya está inscrito(a)"
    assert ADDRESS in phone.inner_text("main")
    assert phone.locator("html").get_attribute("lang") == "es"
    phone.screenshot(path=str(SHOTS / "enrolled-es-phone.png"), full_page=True)
    assert patient(services).status == "active"
    assert phone.goto(link).status == 410
    assert "ya se usó" in phone.get_by_role("alert").inner_text()


def test_the_switch_changes_language_both_ways(services, server, phone):  # noqa: F811
    link = spanish_link(services)
    phone.goto(link)
    switch = phone.get_by_role("link", name="English")
    assert switch.is_visible() and switch.get_attribute("lang") == "en"
    switch.click()
    assert phone.get_by_role("heading", level=1).inner_text().startswith("Enroll")
    accessible(phone, "en")
    SHOTS.mkdir(exist_ok=True)
    phone.screenshot(path=str(SHOTS / "enroll-en-switch-phone.png"), full_page=True)
    phone.get_by_role("link", name="Español").click()
    assert phone.get_by_role("heading", level=1).inner_text().startswith("Inscríbase")
    # The English page still enrolls with the same token.
    phone.get_by_role("link", name="English").click()
    phone.get_by_label("Patient account number").fill("1001")
    phone.get_by_label("New password", exact=True).fill(PASSWORD)
    phone.get_by_label("Type the new password again").fill(PASSWORD)
    phone.get_by_label("I agree").check()
    phone.get_by_role("button", name="Enroll").click()
    assert phone.get_by_role("heading", level=1).inner_text() == "You are enrolled"


@pytest.mark.parametrize("lang", ["xx", "ES<script>", "e", "", "es\r\nX-Bad: 1", "../es"])
def test_hostile_lang_values_fall_back_to_english_or_spanish(services, server, phone,  # noqa: F811
                                                             lang):
    link = spanish_link(services)
    token = re.search(r"token=([\w-]+)", link).group(1)
    from urllib.parse import quote
    response = phone.goto(f"{server.base}/enroll?token={token}&lang={quote(lang)}")
    assert response.status == 200
    assert phone.locator("html").get_attribute("lang") == "en"
    assert "<script>" not in phone.content()


def test_english_stays_the_default(services, server, phone):  # noqa: F811
    add_patient(services, status="roster")
    link = invite_link(services)
    assert "lang=" not in link
    phone.goto(link)
    assert phone.locator("html").get_attribute("lang") == "en"
    assert phone.get_by_role("link", name="Español").is_visible()


def test_every_closed_state_and_message_has_spanish_words():
    assert set(wording.CLOSED_ES) == set(CLOSED)
    for state in CLOSED:
        assert wording.closed("es", state) != CLOSED[state]
    forms = [Form(password="abc"), Form(password="x" * 2000),
             Form(password=PASSWORD, confirm="other"), Form(password=PASSWORD,
                                                             confirm=PASSWORD),
             Form(password=PASSWORD, confirm=PASSWORD, agree=True, terms_version="old")]
    samples = [m for f in forms for m in _field_errors(f, "new").values()]
    assert len(set(samples)) == 5
    for message in samples:
        assert wording.say("es", message) != message, message
    assert wording.say("fr", samples[0]) == samples[0]
    one = wording.say("es", "That account number does not match our records. Check it on "
                            "your statement (1 try left before this link stops working).")
    assert "(le queda 1 intento antes de que" in one
