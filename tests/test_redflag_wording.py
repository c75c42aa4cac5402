"""Red flags on wording seen in independent patient mail: questions about safety that are
not thoughts of harm, instructions quoted back, past scares, readings outside pregnancy,
and warning signs written in Portuguese, French, Italian, Polish, German or Haitian
Creole (rules/lang-*.toml, [[translation]] tables)."""
from __future__ import annotations

import pathlib
import textwrap
import tomllib

import pytest

from gateway.classification import Classifier, RuleError, split_reply
from gateway.classification.text import normalize
from gateway.language import in_other_language

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def clf() -> Classifier:
    return Classifier.load(ROOT / "rules")


def red_flags(clf: Classifier, text: str, subject: str = "") -> list[str]:
    r = clf.classify(text, subject=subject)
    return [h.id for h in r.hits if h.category == "emergency" and h.flag is None
            and not h.id.startswith("model-")]


@pytest.mark.parametrize("text", [
    # a question about safety is not a thought of harm
    "Can I get my hair colored at 17 weeks? And I keep waking up on my back, is that going "
    "to hurt the baby?",
    # Spanish "molestia" is discomfort, not molestation
    "Tengo 2 semanas de mi histerectomía, no tengo fiebre ni dolor fuerte, nomás una "
    "molestia leve. ¿Es normal?",
    # 148/94 outside pregnancy is not a warning sign; severe range is (below)
    "At her pre-op appointment for the hysterectomy her blood pressure was 148/94, she has "
    "white coat syndrome. Will the surgery still go ahead?",
    # the instruction sheet quoted back (a decimal point does not end the sentence)
    "Question about the part that says call for fever over 100.4 or heavy bleeding after my "
    "surgery: who answers on a Saturday night?",
    # a past episode, checked and cleared
    "Last month I passed out at church and they took me to the ER, I'm 24 weeks. It was "
    "dehydration. Can I schedule the follow-up?",
    "Just married! I passed out in line at the DMV last Tuesday, got fluids at urgent care "
    "and all was good, I'm 16 weeks. Please update my name on the chart.",
    "Three weeks ago when I had the bleeding scare at 9 weeks I waited three days for the "
    "ultrasound report. Now I'm 12 weeks, what does CRL mean?",
    "Gracias a la enfermera que me contestó cuando llamé asustada en el embarazo por el dolor "
    "de pecho que al final eran agruras. Quiero hacer mi cita de las 6 semanas.",
    "La semana pasada la llevamos a emergencias porque tenía un dolor muy fuerte, ya está "
    "bien. ¿Me pueden mandar una nota para la escuela?",
    # asking what to do is not an ambulance on its way
    "Tengo 33 semanas. ¿Qué hago si se me rompe la fuente y estoy sola? ¿Llamo a la "
    "ambulancia o a mi cuñada?",
    # a small child's fever is not the pregnant patient's
    "My toddler has had a fever of 102 since last night. Can I bring her to my anatomy scan "
    "tomorrow? I'm 20 weeks and feel fine.",
    # "in 3 weeks" is a date, not "3 weeks pregnant"
    "I had a LEEP 8 days ago. Brownish discharge, the bleeding is lighter than a period, no "
    "fever. Can I use tampons before my beach trip in 3 weeks?",
    "Tengo 30 semanas. A veces se me pone la panza dura, ¿son las contracciones de práctica?",
    # negations in Portuguese and French
    "Olá, estou com 33 semanas, está tudo bem comigo e com o bebê, sem dor, sem sangramento. "
    "Posso tomar a vacina da gripe?",
    "Bonjour, je suis enceinte de 20 semaines, pas de saignement, pas de douleur. Puis-je "
    "voyager en avion le mois prochain?",
    # a blood pressure taken twice is not a medicine taken twice; one extra contraceptive
    # pill is harmless
    "At my 36 week visit the nurse took my blood pressure twice and sent me to L&D. My son "
    "is 3 weeks old now and we are both home. Please thank her.",
    "omg I think I took my birth control twice today, once this morning and again at night. "
    "Feel fine. Do I skip tomorrow's?",
    # a past allergic reaction set in an earlier month or week, or seen and sent home
    "Back in October when I was 30 weeks and had the allergic reaction, hives everywhere and "
    "my face swelling up, your nurse told me to call 911. Eli was born on the 4th. Thank you!",
    "On 1/20 I went to the ER at St. Vincent's because my throat felt tight after the Bactrim. "
    "They gave me epinephrine, watched me for 4 hours and sent me home; I'm totally fine now. "
    "Why was I billed for a telephone consult?",
    # abuse long past (at 15), told to ask for a female provider; severe pressure in a past year
    "Hola, quiero una cita para mi papanicolao. Cuando tenía 15 años en Oaxaca un hombre abusó "
    "de mí y desde entonces me da miedo. ¿Puede ser una doctora mujer?",
    "With my son in 2023 I developed severe preeclampsia, my BP was 170/110 and they induced "
    "me. I'm 6 weeks pregnant again and feel fine. What are my chances?",
    # moving away: every appointment cancelled, no despair
    "We're moving to Texas next month, so please cancel all my appointments, I won't be "
    "needing them. Thank you for everything, you were the best! Que Dios los bendiga.",
    "I've written everything down for Ben about the bottles since I go back to work Monday. "
    "Can you send the pump prescription to Target?",
    # an assault long past, told to plan a first exam
    "I'd like to set up my first gynecology visit. To be honest, I was sexually assaulted my "
    "freshman year (about a year and a half ago) and exams make me anxious. Female provider?",
])
def test_near_misses_do_not_raise(clf, text):
    assert red_flags(clf, text) == [], clf.classify(text).explain()


@pytest.mark.parametrize("text,rule", [
    ("I'm 3 weeks postpartum and I keep thinking I might hurt my baby.",
     "emergency-postpartum-thoughts-of-harming-baby"),
    ("BP 172/115 tonight and a headache that will not quit.", "emergency-severe-blood-pressure"),
    ("Mi esposa va en la ambulancia, tiene 34 semanas y mucho dolor.",
     "emergency-services-involved"),
    ("I have been bleeding non-stop since this morning, I'm 10 weeks.",
     "emergency-heavy-bleeding"),
    ("Boa noite, estou com 30 semanas e estou sangrando muito, o que faço?",
     "emergency-heavy-bleeding"),
    ("Bonjour, je suis enceinte de 32 semaines et j'ai perdu les eaux ce matin.",
     "emergency-pregnancy-waters"),
    ("Buongiorno, sono incinta di 30 settimane e mi si sono rotte le acque.",
     "emergency-pregnancy-waters"),
    ("Guten Tag, ich bin in der 34. Woche schwanger und habe starke Blutungen.",
     "emergency-heavy-bleeding"),
    ("Dzień dobry, mam bardzo silne krwawienie od rana, zużyłam już 4 podpaski.",
     "emergency-heavy-bleeding"),
    # a medicine taken twice still is (a child into a parent's pills)
    ("My 3 year old got up early and took my blood pressure pills twice, he seems sleepy.",
     "emergency-overdose-or-poisoning"),
    ("Help, my toddler got into my pills this morning, I found the bottle open.",
     "emergency-overdose-or-poisoning"),
    ("my 2 year old swallowed some of my iron pills, what do I do",
     "emergency-overdose-or-poisoning"),
    # strangulation told without the word; a small child into the iron pills
    ("He came to my room last night and grabbed me by the neck against the wall. He said "
     "he's coming back tonight to finish it. Please change my phone number.",
     "emergency-unsafe-at-home"),
    ("I am grandma of Ethan, he is 2 year old. He open her vitamin bottle for the iron and eat "
     "some, maybe 5 or 6 missing. He is playing ok now.", "emergency-child-swallowed-medicine"),
    # a farewell without the word suicide
    ("Thank you for everything. Please cancel my appointments, I won't be needing them. I "
     "wrote letters for my husband and my sister. I just can't keep doing this.",
     "emergency-farewell-note"),
    ("Quiero cancelar mi cita, ya no la voy a necesitar. Ya dejé todo arreglado para mis "
     "niños. Perdonen las molestias.", "emergency-farewell-note"),
    ("I was sexually assaulted last night at a party and I don't know what to do.",
     "emergency-sexual-assault"),
    # a swelling throat now, with an ER visit still ahead
    ("My throat feels tight and my lips are swelling after the first dose of the Bactrim. "
     "Should I go to the ER?", "emergency-anaphylaxis"),
])
def test_signs_fire(clf, text, rule):
    assert rule in red_flags(clf, text), clf.classify(text).explain()


def test_text_in_another_latin_language_gets_no_second_opinion(clf):
    """The model never learned Portuguese: its low vote cannot veto a red flag there."""
    pt = ("Boa noite, minha cirurgia foi ontem e agora estou com febre de 38,9 e muita dor, "
          "não sei o que fazer, estou muito preocupada com isso")
    assert in_other_language(normalize(pt))
    scored = clf.score(pt)
    assert scored.model_saw_all is False
    assert clf.decide(scored).category == "emergency"


def test_no_labelled_english_spanish_or_tagalog_mail_is_taken_for_another_language():
    wrong = []
    for path in sorted((ROOT / "tests" / "data").rglob("*.toml")):
        try:
            messages = tomllib.loads(path.read_text(encoding="utf-8")).get("message", [])
        except (tomllib.TOMLDecodeError, UnicodeDecodeError):
            continue
        for i, m in enumerate(messages):
            if m.get("lang", "en") in ("en", "es", "spanglish", "tl-en") and in_other_language(
                    normalize(split_reply(m.get("text", ""))[0])):
                wrong.append(f"{path.name}#{i}")
    assert wrong == []


def test_hostile_other_language_text_is_bounded(clf):
    """A megabyte of function words neither hangs the check nor reads past its limit."""
    text = "je suis avec vous " * 60_000
    assert in_other_language(normalize(text))
    assert clf.classify(text).category in ("emergency", "other", "medical_question",
                                           "appointment", "results", "billing", "surgery",
                                           "demographics")


# --------------------------------------------------------------- [[translation]] tables

BASE = '''
[situation.pregnancy]
description = "pregnant"
phrases = ["pregnant"]

[[rule]]
id = "emergency-bleeding"
category = "emergency"
weight = 5
reason = "bleeding in pregnancy"
phrases = ["bleeding"]
requires = ["heavy"]
situation = "pregnancy"
'''
PT = '''
[[translation]]
situation = "pregnancy"
lang = "pt"
phrases = ["gravida"]

[[translation]]
rule = "emergency-bleeding"
lang = "pt"
phrases = ["sangrando"]
requires = ["muito"]
'''


def _write(tmp_path, files: dict) -> pathlib.Path:
    for name, body in files.items():
        (tmp_path / name).write_text(textwrap.dedent(body), encoding="utf-8")
    return tmp_path


def test_translation_adds_phrases_to_a_rule_and_a_situation(tmp_path):
    clf = Classifier.load(_write(tmp_path, {"a.toml": BASE, "lang-pt.toml": PT}),
                          use_model=False)
    assert clf.classify("Estou gravida e sangrando muito").category == "emergency"
    assert clf.classify("I'm pregnant, heavy bleeding").category == "emergency"
    assert clf.classify("Estou gravida, nao estou sangrando muito").category != "emergency"
    assert clf.classify("sangrando muito").category != "emergency"  # situation still needed


@pytest.mark.parametrize("body,fragment", [
    ('[[translation]]\nrule = "emergency-bleeeding"\nlang = "pt"\nphrases = ["x"]\n',
     "[[translation]] #1: unknown rule 'emergency-bleeeding'"),
    ('[[translation]]\nsituation = "pregnancy"\nrule = "emergency-bleeding"\nlang = "pt"\n'
     'phrases = ["x"]\n', "names either a 'rule' or a 'situation'"),
    ('[[translation]]\nrule = "emergency-bleeding"\nlang = "Portuguese"\nphrases = ["x"]\n',
     "'lang' must be a language code"),
    ('[[translation]]\nsituation = "pregnancy"\nlang = "pt"\nphrases = ["x"]\n'
     'requires = ["y"]\n', "'requires' is only for a rule"),
    ('[[translation]]\nrule = "emergency-bleeding"\nlang = "pt"\nphrases = []\n',
     "needs at least one entry in 'phrases'"),
    ('[[translation]]\nrule = "emergency-bleeding"\nlang = "pt"\nphrases = ["x"]\nweight = 9\n',
     "unknown field(s): weight"),
    ('translation = "pt"\n', "'translation' must be written as [[translation]] tables"),
])
def test_translation_errors_name_file_and_entry(tmp_path, body, fragment):
    with pytest.raises(RuleError) as err:
        Classifier.load(_write(tmp_path, {"a.toml": BASE, "lang-xx.toml": body}),
                        use_model=False)
    assert "lang-xx.toml" in str(err.value) and fragment in str(err.value), str(err.value)


# --------------------------------------------------------------- told in the Subject

def test_a_device_signature_alone_is_no_text_and_the_subject_is_read(clf):
    assert split_reply("Sent from my iPhone\n") == ("", "Sent from my iPhone")
    assert split_reply("Maria Lopez\n555-123-4567") == ("Maria Lopez\n555-123-4567", "")
    r = clf.classify("", subject="8 weeks pregnant bleeding heavy soaking a pad every hour")
    assert r.category == "emergency", r.explain()
    r = clf.classify("", subject="New phone number 707-555-0191 pls update my chart")
    assert r.category == "demographics", r.explain()


def test_severe_pressure_is_a_red_flag_even_when_the_patient_feels_ok(clf):
    """160/110 needs treatment within the hour: "feel ok" does not cancel the reading."""
    text = ("checked my bp at the safeway machine 162/108. did it again 158/110. 31 wks. feel "
            "ok just a little headache. do i need to change my appt or just keep checking?")
    assert "emergency-severe-blood-pressure" in red_flags(clf, text, "bp")
