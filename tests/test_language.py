"""Which language a patient reads: the detector, the choice (roster, text, English), the
emergency notice's languages, the roster's language column, dates in Spanish, the subject
quoted back, and check-config's comparison of every locale with English."""
from __future__ import annotations

import datetime as dt
import shutil

import pytest

from gateway import patients
from gateway.checks import check_all, check_templates
from gateway.clock import human
from gateway.config import ConfigError, load_config
from gateway.language import Choice, choose, detect, notice_languages, patient_language
from gateway.models import Patient
from gateway.notices import Notices, PerLanguage
from gateway.steps.acknowledge import clean_subject
from tests.conftest import ROOT, write_config

SPANISH = [
    "Hola, quisiera cambiar mi cita del martes para la próxima semana, por favor.",
    "me bajó mucha sangre hace rato y tengo 30 semanas, qué hago",
    "Buenas tardes doctora, ¿ya están los resultados de mi ultrasonido? Gracias",
    "Tengo dolor de cabeza muy fuerte desde ayer y no se me quita con nada",
    "no siento al bebé desde anoche, no se mueve",
]
ENGLISH = [
    "Can I move my appointment to next week?",
    "I have had a bad headache since yesterday and it is not getting better.",
    "Hi, are my lab results back yet? Thank you so much.",
    "Please send me the bill for my last visit, I think it was charged twice.",
]
UNSURE = ["ok", "gracias", "bleeding a lot", "👍", "", "12345 67890",
          "Hi doctor, tengo dolor in my stomach since ayer, please help me",
          "Chào bác sĩ, tôi bị đau bụng từ hôm qua", "Salamat po, kailan po ang schedule ko"]


@pytest.mark.parametrize("text", SPANISH)
def test_spanish_text_is_spanish(text):
    assert detect(text) == detect(text) and detect(text).language == "es"
    assert detect(text).sure


@pytest.mark.parametrize("text", ENGLISH)
def test_english_text_is_english(text):
    guess = detect(text)
    assert (guess.language, guess.sure) == ("en", True)


@pytest.mark.parametrize("text", UNSURE)
def test_short_mixed_or_other_text_is_unsure(text):
    assert not detect(text).sure


@pytest.mark.parametrize("hostile", ["\x00" * 10_000, "á" * 100_000, "\u202e" + "el " * 50_000,
                                     "<script>" * 5000, "\ud800", None])
def test_hostile_text_gives_an_answer_quickly_and_never_raises(hostile):
    guess = detect(hostile)
    assert guess.language in (None, "en", "es")


def test_roster_first_then_text_then_english():
    spanish, english = SPANISH[0], ENGLISH[0]
    assert choose("es", english) == Choice("es", "en", True)
    assert choose("en", spanish).language == "en"
    assert choose(None, spanish) == Choice("es", "es", True)
    assert choose(" ES ", "ok") == Choice("es", "es", True)  # short text: the roster
    assert choose(None, "ok") == Choice("en", "en", False)
    assert choose("fr", "ok").language == "en"  # no French templates: English
    assert choose("zz!", spanish).language == "es"


def test_emergency_notice_languages():
    assert notice_languages(choose("es", ENGLISH[0])) == ["es", "en"]
    assert notice_languages(choose(None, SPANISH[1])) == ["es", "en"]
    assert notice_languages(choose(None, ENGLISH[1])) == ["en"]
    assert notice_languages(choose("en", ENGLISH[1])) == ["en"]
    assert notice_languages(choose(None, "bleeding a lot")) == ["en", "es"]
    # The roster says English but the patient wrote Spanish: Spanish first, English too.
    assert notice_languages(choose("en", SPANISH[1])) == ["es", "en"]


def test_mail_without_patient_text_follows_the_roster():
    assert patient_language(Patient(language="es")) == "es"
    assert patient_language(Patient(language=None)) == "en"
    assert patient_language(Patient(language="de")) == "en"
    assert patient_language(Patient(language="en"), SPANISH[0]) == "es"  # a staff answer


def test_dates_in_spanish_with_babel():
    when = dt.datetime(2026, 12, 4, 20, 31)  # UTC
    assert human(when, "America/Los_Angeles", "es").replace("\u202f", " ").replace(
        "\xa0", " ") == "viernes, 4 de diciembre de 2026, 12:31 p. m. PST"
    assert human(when, "America/Los_Angeles") == "Friday, December 4, 2026 at 12:31 PM PST"


@pytest.mark.parametrize("raw,expected", [
    ("Re: RE: Fwd: Refill", "Refill"),
    ("Cita\r\nBcc: x@evil.example", "Cita Bcc: x@evil.example"),
    ("\u202eevil\u202c\u200b name\x07\x00", "evil name"),
    ("\u2028two\u2029lines\t", "two lines"),
    ("", ""),
    ("RE:", ""),
])
def test_subject_is_cleaned(raw, expected):
    assert clean_subject(raw) == expected


def test_subject_is_capped():
    cleaned = clean_subject("x" * 5000)
    assert len(cleaned) == 100 and cleaned.endswith("\u2026")


ROSTER = """account_number,first_name,last_name,email,state,language
1001,Ana,Lopez,ana@example.com,CA,es
1002,Bea,Kim,bea@example.com,CA,
1003,Cy,Ng,cy@example.com,CA,spanish
1004,Dee,Ng,dee@example.com,CA, EN
1005,Eve,Moss,eve@example.com,CA,e\u0301
1006,Fay,Ortiz,fay@example.com,CA,<script>
"""


def test_roster_language_column_is_stored_and_bad_values_reported_by_line(services):
    with services.transaction() as session:
        report = patients.import_roster(session, ROSTER)
    assert report.added == 3
    assert [line for line, _ in report.errors] == [4, 6, 7]
    assert all("ISO 639-1" in problem for _, problem in report.errors)
    with services.factory() as session:
        langs = {p.account_number: p.language for p in session.query(Patient)}
    assert langs == {"1001": "es", "1002": None, "1004": "en"}
    # A roster without the column leaves the stored language alone.
    with services.transaction() as session:
        patients.import_roster(session, "account_number,first_name,last_name,email,state\n"
                                        "1001,Ana,Lopez,ana@example.com,CA\n")
    with services.factory() as session:
        assert patients.by_account(session, "1001").language == "es"


def _cfg(tmp_path, templates):
    return load_config(write_config(tmp_path, "sqlite:///unused.db"),
                       overrides={"gateway": {"templates_dir": str(templates)}})


def test_check_config_compares_every_locale_with_english(tmp_path):
    templates = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", templates)
    assert check_all(_cfg(tmp_path, templates)) == []
    es = templates / "mail" / "es"
    (es / "invite.txt").unlink()
    (es / "ack.txt").write_text((es / "ack.txt").read_text().replace("{{ due }}",
                                                                     "{{ expires }}"))
    (es / "staff_copy_typo.txt").write_text("Subject: x\n\nx\n")
    (templates / "pages" / "es" / "enrolled.html").unlink()
    terms = templates / "pages" / "es" / "terms.html"
    terms.write_text(terms.read_text().replace('"2025-01"', '"2024-01"'))
    problems = check_all(_cfg(tmp_path, templates))
    text = "\n".join(problems)
    assert "es/invite.txt: missing" in text
    assert "es/ack.txt: variables differ from English: due, expires" in text
    assert "es/staff_copy_typo.txt: no English template" in text
    assert "es/enrolled.html: missing" in text
    assert "terms_version '2024-01' differs" in text
    assert len(problems) == 5


def test_check_config_names_a_broken_locale_template(tmp_path):
    templates = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", templates)
    (templates / "mail" / "es" / "notification.txt").write_text("Asunto: x\n\n{{ portal_url }}"
                                                               "{{ patient_name }}"
                                                               "{{ practice_name }}"
                                                               "{{ office_phone }}"
                                                               "{{ office_hours }}"
                                                               "{{ after_hours_name }}"
                                                               "{{ after_hours_line }}\n")
    problems = check_templates(_cfg(tmp_path, templates))
    assert len(problems) == 1 and "es/notification.txt" in problems[0]
    assert "Subject:" in problems[0]


def test_office_hours_in_the_mails_language(tmp_path):
    notices = Notices(ROOT / "templates")
    hours = PerLanguage({"en": "Mon-Fri 8-5", "es": "lun. a vie., de 8 a 5"})
    ctx = dict(patient_name="Ana", portal_url="https://p.example", practice_name="P",
               office_phone="1", office_hours=hours, after_hours_name="H",
               after_hours_line="2")
    assert "(lun. a vie., de 8 a 5)" in notices.render("notification", "es", **ctx)[1]
    assert "(Mon-Fri 8-5)" in notices.render("notification", "en", **ctx)[1]
    cfg = tmp_path / "c.toml"
    cfg.write_text(write_config(tmp_path, "sqlite:///x.db").read_text()
                   + '\n[practice]\noffice_hours_by_language = { Spanish = "x" }\n')
    with pytest.raises(ConfigError, match=r"\[practice\] office_hours_by_language"):
        load_config(cfg)
