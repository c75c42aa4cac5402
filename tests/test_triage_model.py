"""The learned triage model and how it is combined with the rules (rules/README.md)."""
from __future__ import annotations

import datetime as dt
import email
import email.policy
import email.utils
import gzip
import importlib.util
import json
import pathlib
import re
import subprocess
import sys
import textwrap

import pytest
from sqlalchemy import select

from gateway.classification import Classifier, RuleError
from gateway.classification.learned import DEFAULT_PATH, FORMAT, LearnedModel
from gateway.classification.model import CATEGORIES
from gateway.models import Thread
from tests.conftest import wait_for_mail
from tests.helpers import add_patient, load_eval, patient_mail, smtp_send

ROOT = pathlib.Path(__file__).resolve().parent.parent
RULES = ROOT / "rules"
PORTAL = "portal@portal.example.org"
PSEUDO = re.compile(r"^model-[a-z_]+:[01]\.\d\d$")


@pytest.fixture(scope="module")
def clf() -> Classifier:
    return Classifier.load(RULES)


def toy_model(**weights) -> LearnedModel:
    """A hand-made model: each feature votes for one category with the given weight."""
    table = {}
    for name, (category, w) in weights.items():
        table[name] = [w if c == category else 0.0 for c in CATEGORIES]
    return LearnedModel({"format": FORMAT, "classes": list(CATEGORIES),
                         "intercept": [0.0] * len(CATEGORIES), "weights": table,
                         "emergency_threshold": 0.5, "min_confidence": 0.4,
                         "features": {"char": 0, "bigrams": False}})


def rules_dir(tmp_path, body: str) -> pathlib.Path:
    (tmp_path / "r.toml").write_text(textwrap.dedent(body))
    return tmp_path


# ------------------------------------------------------------------ the shipped model

def test_shipped_model_matches_the_corpus():
    ev = load_eval()
    train, held, digest = ev.training_corpus()
    model = LearnedModel.load()
    assert model.corpus_sha256 == digest, "corpus changed: run bench/train_classifier.py"
    assert len(train) >= 4 * len(held) * 0.8 and held
    assert DEFAULT_PATH.stat().st_size < 3 * 1024 * 1024


def test_model_is_reproducible_from_the_corpus():
    pytest.importorskip("sklearn")
    path = ROOT / "bench" / "train_classifier.py"
    spec = importlib.util.spec_from_file_location("train_classifier", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--check"]) == 0


def test_held_out_split_is_the_shared_hash_rule():
    ev = load_eval()
    train, held, _ = ev.training_corpus()
    import hashlib
    assert all(int(hashlib.sha256(s.text.encode()).hexdigest(), 16) % 5 == 0 for s in held)
    assert not any(s.held_out for s in train)
    assert not {s.text for s in train} & {s.text for s in held}


def test_held_out_figures(clf):
    """The combined decision on the held-out split (never trained on)."""
    ev = load_eval()
    res = ev.evaluate(clf, ev.training_corpus()[1])
    assert res["emergency_recall"] >= 0.98, [s.source for s, r in res["wrong"]
                                             if s.expected == "emergency"]
    assert res["accuracy"] >= 0.78
    assert res["fp_rate"] <= 0.20


def test_inference_needs_no_training_library():
    code = ("import sys\nfor m in ('sklearn', 'numpy', 'scipy'): sys.modules[m] = None\n"
            "from gateway.classification import Classifier\n"
            "c = Classifier.load('rules')\nassert c.model is not None\n"
            "print(c.classify('my water broke at 34 weeks', 'help').category)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "emergency"


# ------------------------------------------------------------------ the decision

def test_model_vote_is_shown_as_a_pseudo_rule(clf):
    r = clf.classify("Hi, can I move my annual exam to next Thursday afternoon?", "visit")
    assert r.category == "appointment" and r.decided_by == "model"
    assert PSEUDO.match(r.rule_ids[0]) and r.rule_ids[0].startswith("model-appointment:")
    assert "top words" in r.hits[0].reason


def zebra_toml(rule_id="emergency-zebra-sign", category="emergency", extra="") -> str:
    """One rule matching "zebra stripes" (a red flag unless *category* says otherwise)."""
    return (f'[[rule]]\nid = "{rule_id}"\ncategory = "{category}"\nweight = 4\n'
            f'reason = "test red flag"\nphrases = ["zebra stripes"]\n{extra}')


@pytest.fixture
def zebra_rules(tmp_path) -> pathlib.Path:
    """A rules dir with one red-flag rule ("zebra stripes") and the default settings."""
    return rules_dir(tmp_path, zebra_toml())


def test_red_flag_rule_raises_to_emergency_when_the_model_does_not(zebra_rules):
    clf = Classifier.load(zebra_rules)
    # The model leans to billing but does not rule an emergency out (p ~ 0.10).
    clf.model = toy_model(**{"w:bill": ("billing", 3.0)})
    r = clf.classify("question about my bill, also zebra stripes on my arm")
    assert r.model.emergency >= clf.settings.red_flag_model_floor
    assert r.category == "emergency" and r.decided_by == "red-flag" and r.urgent
    assert r.model.category == "billing"
    negated = clf.classify("no zebra stripes, question about my bill")
    assert negated.category != "emergency" and "emergency-zebra-sign" not in negated.rule_ids


def test_red_flag_rule_needs_the_model_not_to_rule_an_emergency_out(zebra_rules, tmp_path):
    rules = zebra_rules
    clf = Classifier.load(rules)
    # The model is sure this is a bill (emergency p ~ 0.02, under the 0.1 floor).
    clf.model = toy_model(**{"w:bill": ("billing", 12.0)})
    text = "question about my bill, also zebra stripes on my arm"
    r = clf.classify(text)
    assert r.category == "billing" and not r.urgent
    assert "emergency-zebra-sign" in r.rule_ids  # the rule is still shown to staff
    # Ops can let every red-flag rule raise on its own again.
    (tmp_path / "s.toml").write_text("[settings]\nred_flag_model_floor = 0\n")
    clf2 = Classifier.load(rules)
    clf2.model = clf.model
    assert clf2.classify(text).category == "emergency"


def test_unambiguous_red_flag_is_raised_whatever_the_model_says(tmp_path):
    """`second_opinion = false` (violence at home, overdose...): the floor does not apply."""
    rules = rules_dir(tmp_path, zebra_toml(extra="second_opinion = false\n"))
    clf = Classifier.load(rules)
    clf.model = toy_model(**{"w:bill": ("billing", 12.0)})
    r = clf.classify("question about my bill, also zebra stripes on my arm")
    assert r.model.emergency < clf.settings.red_flag_model_floor
    assert r.category == "emergency" and r.decided_by == "red-flag", r.explain()


def test_second_opinion_is_only_for_red_flag_rules(tmp_path):
    rules = rules_dir(tmp_path, zebra_toml("billing-zebra", "billing",
                                           "second_opinion = false\n"))
    with pytest.raises(RuleError) as err:
        Classifier.load(rules)
    assert "r.toml" in str(err.value) and "billing-zebra" in str(err.value)
    assert "second_opinion" in str(err.value)


def test_shipped_rules_without_second_opinion_never_fire_on_a_labelled_non_emergency(clf):
    """`second_opinion = false` is kept for red flags with no false alarm in the labelled
    corpus (training sources, held-out split included): a rule that starts firing on a
    non-emergency must get the model's second opinion back (or be fixed)."""
    sure = {r.id for r in clf.rules if not r.second_opinion}
    assert {"emergency-anaphylaxis", "emergency-overdose-or-poisoning",
            "emergency-unsafe-at-home"} <= sure
    corpus = load_eval().triage_corpus
    false = {}
    for source in corpus.TRAINING_SOURCES:
        for s in corpus.load_corpus(source):
            if s.expected == "emergency":
                continue
            hits = clf.score(s.new_text(), s.subject).hits
            for rid in sure & {h.id for h in hits}:
                false.setdefault(rid, []).append(s.source)
    assert false == {}


def test_red_flag_told_in_the_subject_needs_no_second_opinion(zebra_rules):
    """A patient who writes the whole message in the Subject ("8 weeks bleeding heavy
    clots") and "please help" below: the model has hardly read anything, so it cannot
    overrule the red flag; with a body it has read, it can."""
    clf = Classifier.load(zebra_rules)
    clf.model = toy_model(**{"w:bill": ("billing", 12.0), "s:bill": ("billing", 12.0)})
    clf.model.config["min_words"] = 12
    r = clf.classify("bill please help", subject="zebra stripes and my bill")
    assert r.category == "emergency" and r.decided_by == "red-flag", r.explain()
    long_body = ("question about my bill from last month, I think I was charged twice "
                 "for the same visit, and also zebra stripes")
    assert clf.classify(long_body, subject="zebra stripes and my bill").category == "billing"


def test_no_rule_lowers_an_emergency_and_a_pin_decides_otherwise(tmp_path):
    rules = rules_dir(tmp_path, """
        [[rule]]
        id = "other-parking-pin"
        category = "other"
        weight = 2
        reason = "Parking questions go to the front desk (ops pin)"
        pin = true
        phrases = ["parking"]
        """)
    clf = Classifier.load(rules)
    clf.model = toy_model(**{"w:bleeding": ("emergency", 8.0), "w:bill": ("billing", 6.0)})
    r = clf.classify("parking bill question")
    assert (r.category, r.decided_by) == ("other", "pin")
    r = clf.classify("bleeding in the parking lot")
    assert (r.category, r.decided_by) == ("emergency", "model")
    assert r.rule_ids[0].startswith("model-emergency:")


def test_unsure_model_sends_the_message_to_triage(tmp_path):
    clf = Classifier.load(rules_dir(tmp_path, """
        [[rule]]
        id = "billing-x"
        category = "billing"
        weight = 3
        reason = "x"
        phrases = ["invoice"]
        """))
    clf.model = toy_model(**{"w:bill": ("billing", 6.0)})
    r = clf.classify("hello there, a question")  # no evidence: uniform probabilities
    assert r.category == "other" and r.decided_by == "model"
    assert clf.classify("the bill").category == "billing"


def test_patient_marked_urgent_is_a_flag_not_an_emergency(clf):
    r = clf.classify("URGENT!!! please change my address to 12 Oak St, Fresno CA 93701")
    assert r.category == "demographics" and not r.urgent and r.patient_urgent
    r = clf.classify("URGENT my water just broke, I'm 33 weeks")
    assert r.category == "emergency" and not r.patient_urgent


@pytest.mark.parametrize("text", [
    "x" * 1_000_000, "\x00\x01\x02" * 1000, "😀🔥" * 5000, "\u202e" + "bleeding " * 3000,
    "", "   \n\n  ", "<script>alert(1)</script>" * 500, "١٢٣ ٤٥٦ " * 2000,
])
def test_hostile_text_still_gets_a_category(clf, text):
    r = clf.classify(text, subject=text[:5000], context_kind=text[:100] or None)
    assert r.category in CATEGORIES and PSEUDO.match(r.rule_ids[0])


def test_bad_model_file_is_refused_with_its_name(tmp_path):
    bad = tmp_path / "m.json.gz"
    bad.write_bytes(b"not gzip")
    with pytest.raises(RuleError, match=re.escape(str(bad))):
        LearnedModel.load(bad)
    bad.write_bytes(gzip.compress(json.dumps({"format": FORMAT, "classes": ["a"],
                                              "intercept": [0], "weights": {},
                                              "emergency_threshold": 0.5}).encode()))
    with pytest.raises(RuleError, match="not a portal-triage"):
        LearnedModel.load(bad)


def test_rule_options_are_validated(tmp_path):
    base = '[[rule]]\nid = "other-x"\ncategory = "other"\nweight = 2\nreason = "x"\n' \
           'phrases = ["x"]\n'
    for extra, message in (('pin = "yes"', "'pin' must be true or false"),
                           ('flag = "vip"', "unknown flag 'vip'"),
                           ('pin = true\nflag = "patient-urgent"', "either a flag or a pin")):
        (tmp_path / "r.toml").write_text(base + extra + "\n")
        with pytest.raises(RuleError, match=re.escape(message)):
            Classifier.load(tmp_path)
    (tmp_path / "r.toml").write_text(base + "[settings]\nmodel = 1\n")
    with pytest.raises(RuleError, match="'model' must be true or false"):
        Classifier.load(tmp_path)
    (tmp_path / "r.toml").write_text(base + "[settings]\nmodel = false\n")
    assert Classifier.load(tmp_path).model is None


# ------------------------------------------------------------------ end to end

def read(path):
    return email.message_from_bytes(path.read_bytes(), policy=email.policy.default)


async def test_emergency_thread_is_due_on_the_urgent_clock(services, gateway):
    add_patient(services)
    msg = patient_mail(subject="embarrassing question", body=(
        "I had my baby 2 weeks ago and I keep having thoughts of hurting her, I haven't "
        "slept in days and I'm scared of myself."))
    assert (await smtp_send(gateway.inbound_port, "ana@example.com", [PORTAL],
                            msg.as_bytes()))[:2] == ("DATA", 250)
    root = services.cfg.maildir_root
    oncall = read((await wait_for_mail(root, "oncall@practice.example.org"))[0])
    assert oncall["X-Portal-Category"] == "emergency" and oncall["X-Portal-Urgent"] == "yes"
    assert re.search(r"\bmodel-emergency:[01]\.\d\d\b", oncall["X-Portal-Rules"])
    with services.factory() as session:
        thread = session.scalars(select(Thread)).one()
        minutes = (thread.due_at - thread.created_at).total_seconds() / 60
    assert minutes == pytest.approx(services.cfg.policy.urgent_reply_minutes, abs=0.2)
    assert email.utils.parsedate_to_datetime(oncall["X-Portal-Due"]).timestamp() == \
        pytest.approx(thread.due_at.replace(tzinfo=dt.timezone.utc).timestamp(), abs=1)
    body = oncall.get_content()
    assert "URGENT" in body and "Answer due by" in body.split("\n\n")[0]
    assert "decided by model" in body and "Words that weighed most with the model:" in body


async def test_patient_marked_urgent_goes_to_its_team_with_a_flag(services, gateway):
    add_patient(services)
    msg = patient_mail(subject="URGENT", body="URGENT!! please update my phone number to "
                       "(559) 555-0199 and my address to 40 Elm St, Fresno CA 93701.")
    assert (await smtp_send(gateway.inbound_port, "ana@example.com", [PORTAL],
                            msg.as_bytes()))[:2] == ("DATA", 250)
    root = services.cfg.maildir_root
    team = services.cfg.team_for("demographics")[0]
    staff = read((await wait_for_mail(root, team))[0])
    assert staff["X-Portal-Category"] == "demographics" and staff["X-Portal-Urgent"] == "no"
    assert staff["X-Portal-Patient-Urgent"] == "yes"
    assert "Patient marked urgent" in staff.get_content()
    ack = read((await wait_for_mail(root, "ana@example.com"))[0])
    assert "will answer it by" in ack.get_body(("plain",)).get_content()
    with services.factory() as session:
        thread = session.scalars(select(Thread)).one()
        assert not thread.urgent
        assert (thread.due_at - thread.created_at).total_seconds() > 24 * 3600
