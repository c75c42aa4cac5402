"""Red flags fire only for a sign happening now: negation, history, hypotheticals,
and the [situation.NAME] tables rules use for context (pregnancy, postpartum, after surgery)."""
from __future__ import annotations

import pathlib
import textwrap

import pytest

from gateway.classification import Classifier, RuleError
from gateway.classification.qualifiers import is_history, is_hypothetical, not_now
from gateway.classification.text import normalize

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def clf() -> Classifier:
    return Classifier.load(ROOT / "rules")


def cat(clf: Classifier, text: str, subject: str = "") -> str:
    return clf.classify(text, subject=subject).category


def _at(text: str, phrase: str) -> tuple[str, int, int]:
    norm = normalize(text)
    start = norm.index(phrase)
    return norm, start, start + len(phrase)


@pytest.mark.parametrize("text,phrase", [
    ("I bled a lot with my first baby, will that happen again?", "bled a lot"),
    ("With my first I had a postpartum hemorrhage", "hemorrhage"),
    ("Con mi primer bebé se me rompió la fuente a las 35 semanas", "se me rompio la fuente"),
    ("En mi primer parto hace 4 años tuve una hemorragia", "hemorragia"),
    ("I had an ectopic in 2023 and lost a tube", "ectopic"),
    ("Last time I fainted during the blood draw", "fainted"),
    ("My mom had a stroke at 60", "stroke"),
])
def test_history_marker(text, phrase):
    assert is_history(*_at(text, phrase))


@pytest.mark.parametrize("text,phrase", [
    ("What should I do if my water breaks?", "water breaks"),
    ("what if I start bleeding heavily at night", "bleeding heavily"),
    ("¿Qué hago si se me rompe la fuente?", "fuente"),
    ("The insert says it can cause chest pain", "chest pain"),
    ("When should I go to L&D for contractions?", "contractions"),
])
def test_hypothetical_marker(text, phrase):
    assert is_hypothetical(*_at(text, phrase))


@pytest.mark.parametrize("text,phrase", [
    ("I had a c-section 5 days ago and now I have a fever", "fever"),
    ("I'm not sure if the baby stops moving or is just quiet", "stops moving"),
    ("With my first I bled a lot but now I'm soaking a pad an hour", "soaking a pad"),
    ("I had preeclampsia with my first and today I have a pounding headache", "headache"),
    ("My husband says my face is drooping on one side since lunch", "drooping"),
])
def test_current_sign_is_not_discounted(text, phrase):
    assert not not_now(*_at(text, phrase))


@pytest.mark.parametrize("text", [
    "No bleeding, no pain, baby moving fine, just wondering about travel at 30 weeks.",
    "I bled a lot after delivery with my first baby. Will that happen again this time?",
    "What should I do if my water breaks and my husband is at work? I'm 36 weeks.",
    "URGENT: please update my address to 12 Oak St, Fresno CA.",
    "This is urgent!! Why was I charged twice for my visit?",
    "URGENTE: necesito cambiar mi cita del viernes.",
    "Hi, my ankles swell by evening at 34 weeks, face and hands are normal, no headache.",
    "Our water heater broke so I can't make my 2pm tomorrow, can I come Friday?",
    "Can ibuprofen hurt the baby? I'm 20 weeks.",
    "I read the insert: it can cause blood clots and chest pain. I feel fine.",
    # figurative or everyday wording that looks like a red flag
    "My mom would kill me if she knew I was pregnant. When is my next appointment?",
    "I'm driving into the city for my ultrasound, where do I park?",
    "Me corté el pelo y ahora me tocó la cita del viernes, ¿puedo cambiarla?",
    "My breasts are droopy after nursing, is that normal?",
    "I accidentally took 2 prenatal vitamins today, is that an overdose? 13 weeks.",
    "My friend said she didn't realize she was in labor. How will I know? I'm 30 weeks.",
    # someone else's story, in the plural or possessive, and "just"/"also"
    "My coworker's water broke at 34 weeks last week. I'm 30 weeks and fine so far.",
    "My mom just had a stroke, she is recovering well. Can I stay on the pill at 44?",
    "I'm 35 weeks. What am I supposed to do if my water breaks in the middle of the night?",
])
def test_near_misses_do_not_fire(clf, text):
    """No red-flag rule fires (the learned model's own false alarms are measured by
    bench/classify_eval.py on the held-out split, not pinned message by message)."""
    r = clf.classify(text)
    red = [h.id for h in r.hits if h.category == "emergency" and h.flag is None
           and not h.id.startswith("model-")]
    assert not red and r.decided_by != "red-flag", r.explain()


@pytest.mark.parametrize("text", [
    "35 weeks. Headache for two days that Tylenol isn't helping, sparkly spots in my vision, "
    "my rings don't fit since this morning. Is this normal?",
    "About 6 weeks pregnant, sharp pain low on my left side and my shoulder hurts, I feel dizzy.",
    "Necesito cambiar mi telefono. Anoche mi esposo sacó la pistola y me dijo que si me iba "
    "me mataba a mí y a los niños.",
    "Please update my address. Last night he pulled a gun on me in front of the kids.",
    # a partner writing for the patient tells her signs now, not a history
    "My wife had a seizure about 20 min ago, she is 37 weeks pregnant. She is confused now.",
    "Started the new antibiotic 40 min ago, now my lips feel puffy and my throat is tight.",
    "I keep having scary thoughts of hurting the baby and I haven't slept in days.",
    "24 weeks, watery discharge that keeps leaking and pressure down there with cramps.",
    "I need a fit-to-fly letter today, my flight is tomorrow at 6 am. I'm 33 weeks.",
    "Had my hysterectomy 3 days ago and since last night I can't pee.",
    "Her face is drooping on one side and her words are coming out wrong.",
    "Me tomé como 15 pastillas de dormir hace rato.",
    "I'm 31 weeks and the tightening is coming every 6-8 minutes.",
])
def test_concept_combinations_fire(clf, text):
    r = clf.classify(text)
    assert r.category == "emergency", r.explain()


def test_urgent_alone_is_not_emergency_but_same_day_deadline_is(clf):
    assert cat(clf, "URGENT question about my bill") == "billing"
    assert cat(clf, "Please send the letter today, my flight is tomorrow morning.") == "emergency"


# ------------------------------------------------------------------ hostile text

def test_many_negations_then_a_real_sign_still_fires(clf):
    text = "no fever, " * 5000 + ". I'm soaking a pad every hour."
    assert cat(clf, text) == "emergency"


def test_long_hostile_text_stays_quiet_and_finishes(clf):
    # Each window check is bounded, so huge inputs of markers and near-matches finish.
    text = ("what if if if not not no history of with my first in case " * 4000
            + "bleed " * 2000)
    assert cat(clf, text) != "emergency"
    text = "baby " * 20000 + "kick " * 20000
    assert clf.classify(text).category in {"emergency", "medical_question", "other"}


def test_only_negated_signs_do_not_fire(clf):
    text = " ".join(["no bleeding, no fever, no contractions, no headache."] * 2000)
    assert cat(clf, text) != "emergency"


# ------------------------------------------------------------------ situations

def _write(tmp_path: pathlib.Path, body: str) -> pathlib.Path:
    (tmp_path / "r.toml").write_text(textwrap.dedent(body), encoding="utf-8")
    return tmp_path


RULE = '''
[situation.pregnancy]
phrases = ["pregnant"]

[[rule]]
id = "emergency-fever"
category = "emergency"
weight = 5
reason = "fever in pregnancy"
phrases = ["fever"]
situation = "pregnancy"
'''


def test_situation_is_required_and_must_be_live(tmp_path):
    clf = Classifier.load(_write(tmp_path, RULE), use_model=False)
    assert cat(clf, "I'm pregnant and have a fever") == "emergency"
    assert cat(clf, "I have a fever") == "other"
    assert cat(clf, "I have a fever, I'm not pregnant") == "other"
    assert cat(clf, "With my last pregnant time, never mind: fever since noon") == "other"


@pytest.mark.parametrize("body,fragment", [
    (RULE.replace('situation = "pregnancy"', 'situation = "pregnency"'),
     "rule 'emergency-fever': unknown situation 'pregnency'"),
    (RULE.replace('situation = "pregnancy"', 'situation = 3'), "'situation' must be"),
    (RULE.replace('phrases = ["pregnant"]', 'phrases = []'), "[situation.pregnancy]: needs"),
    (RULE.replace('phrases = ["pregnant"]', 'phrases = ["pregnant"]\nweeks = 3'),
     "[situation.pregnancy]: unknown field(s): weeks"),
])
def test_situation_errors_name_file_and_table(tmp_path, body, fragment):
    with pytest.raises(RuleError) as err:
        Classifier.load(_write(tmp_path, body))
    assert "r.toml" in str(err.value) and fragment in str(err.value), str(err.value)


# ------------------------------------------------------------------ shipped patterns

def _nested_repeat(parsed, inside: bool = False) -> bool:
    import re._parser as sre_parse  # noqa: F401  (parsed is a SubPattern)
    from re._constants import MAX_REPEAT, MIN_REPEAT, SUBPATTERN, BRANCH, ASSERT, ASSERT_NOT
    for op, av in parsed:
        if op in (MAX_REPEAT, MIN_REPEAT):
            lo, hi, sub = av
            if hi > 1 and inside:
                return True
            if _nested_repeat(sub, inside or hi > 1):
                return True
        elif op is SUBPATTERN:
            if _nested_repeat(av[-1], inside):
                return True
        elif op is BRANCH:
            if any(_nested_repeat(b, inside) for b in av[1]):
                return True
        elif op in (ASSERT, ASSERT_NOT):
            if _nested_repeat(av[1], inside):
                return True
    return False


def test_shipped_patterns_have_no_nested_quantifiers():
    """Rule patterns run on text strangers write: no (a+)* style backtracking traps."""
    import re._parser as sre_parse
    import tomllib
    bad = []
    for path in sorted((ROOT / "rules").glob("*.toml")):
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        tables = list(data.get("rule", [])) + list(data.get("situation", {}).values())
        for table in tables:
            for key in ("patterns", "requires_patterns"):
                for pattern in table.get(key, []):
                    if _nested_repeat(sre_parse.parse(pattern)):
                        bad.append((path.name, table.get("id"), pattern))
    assert not bad, bad


def test_clinical_md_names_every_emergency_rule_and_no_stale_one(clf):
    """rules/CLINICAL.md traces each emergency rule to its source: keep the two in step."""
    import re
    doc = (ROOT / "rules" / "CLINICAL.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`(emergency-[a-z0-9-]+)`", doc))
    shipped = {r.id for r in clf.rules if r.category == "emergency" and r.flag is None}
    assert shipped - named == set(), "emergency rules without a clinical source in CLINICAL.md"
    assert named - shipped == set(), "CLINICAL.md names rules that do not exist"


@pytest.mark.parametrize("text,subject,expected", [
    ("Our water heater broke, can I move my visit to Friday?", "water broke", False),
    ("Please call me.", "water broke!!", True),
    ("My water is not broken, baby moving fine, just a question about my birth plan. 39 weeks.",
     "", False),
    ("The incision is a little pink but no swelling, no drainage. 1 week after my c-section.",
     "", False),
    ("My water has broken, 37 weeks.", "", True),
])
def test_subject_and_gap_negation(clf, text, subject, expected):
    r = clf.classify(text, subject=subject)
    assert (r.category == "emergency") is expected, r.explain()


def test_vietnamese_pregnancy_is_a_situation_for_a_fever_reading():
    """A temperature reading is read in any language; the pregnancy it matters in is
    recognised in Vietnamese too ("mang thai 20 tuan": pregnant 20 weeks)."""
    rules_only = Classifier.load(ROOT / "rules", use_model=False)
    text = ("Chào bác sĩ, Tôi đang mang thai 20 tuần. Từ tối hôm qua tôi bị sốt, đo được "
            "101.8 độ F, người lạnh run. Tôi có cần đi khám ngay không?")
    r = rules_only.classify(text)
    assert "emergency-fever-in-context" in r.rule_ids and r.category == "emergency"
    # the same reading with no pregnancy, birth or surgery named is not a red flag
    assert "emergency-fever-in-context" not in rules_only.classify(
        "Chào bác sĩ, con tôi bị sốt, đo được 101.8 độ F.").rule_ids
