"""rules/confidential.toml: what it marks (English and Spanish lay words), what it leaves
alone, how a bad file is reported (file and marker named), and the ReDoS guard over its
patterns.  Pure: no database."""
from __future__ import annotations

import re
import shutil

import pytest

from gateway.classification import Classifier, RuleError
from gateway.classification import confidential
from gateway.classification.redos import check_rule_patterns, vet
from tests.conftest import ROOT

MARKERS = confidential.load(ROOT / "rules")


@pytest.mark.parametrize("text, topics", [
    ("Can she take a pregnancy test? Her period is late.", ("pregnancy",)),
    ("I'm not pregnant, just asking about the pill", ("pregnancy", "contraception")),
    ("¿Le pueden dar la pastilla del día siguiente?", ("contraception",)),
    ("Creo que tiene clamidia, le arde al orinar", ("sti",)),
    ("She had unprotected sex with her boyfriend", ("sexual-health",)),
    ("Alguien abusó de ella, abuso sexual", ("sexual-assault",)),
    ("She's been depressed and is cutting herself", ("mental-health",)),
    ("Está muy deprimida, ¿puede ver a la psicóloga?", ("mental-health",)),
    ("She said she wants to die", ("mental-health",)),
])
def test_markers_find_the_topics(text, topics):
    assert set(topics) <= set(confidential.find(MARKERS, text))


@pytest.mark.parametrize("text", [
    "Can we move her appointment to Tuesday?",
    "Please update her address and phone number",
    "I have a question about the statement payment due date",
    "Is the sex of the baby visible on the scan yet?",
    "Necesito cambiar la cita del martes",
])
def test_everyday_matters_are_not_marked(text):
    assert confidential.find(MARKERS, text) == ()


def test_the_subject_counts_and_the_classifier_reports_topics():
    classifier = Classifier.load(ROOT / "rules")
    scored = classifier.score("Can she come in next week?", subject="STD test")
    assert scored.confidential == ("sti",)
    assert classifier.confidential("Her HIV test came back", "") == ("sti",)


@pytest.mark.parametrize("body, problem", [
    ('[[marker]]\nid = "x"\ntopic = "gossip"\nreason = "r"\nphrases = ["a"]\n',
     "unknown topic 'gossip'"),
    ('[[marker]]\nid = "Bad Id"\ntopic = "sti"\nreason = "r"\nphrases = ["a"]\n',
     "kebab-case"),
    ('[[marker]]\nid = "x"\ntopic = "sti"\nreason = "r"\n', "phrases"),
    ('[[marker]]\nid = "x"\ntopic = "sti"\nreason = "r"\npatterns = ["(unclosed"]\n',
     "bad regular expression"),
    ('[[rule]]\nid = "x"\n', "only [[marker]]"),
])
def test_a_bad_marker_file_names_file_and_marker(tmp_path, body, problem):
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    (rules / "confidential.toml").write_text(body)
    with pytest.raises(RuleError) as e:
        Classifier.load(rules)
    assert "confidential.toml" in str(e.value) and problem in str(e.value)


def test_a_backtracking_marker_pattern_is_refused_and_ours_scan_fast(tmp_path):
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    with (rules / "confidential.toml").open("a") as fh:
        fh.write('\n[[marker]]\nid = "slow-marker"\ntopic = "sti"\nreason = "careless"\n'
                 "patterns = ['std\\s*\\s*\\s*x']\n")
    problems = check_rule_patterns(rules, seconds=2.0)
    assert len(problems) == 1 and "slow-marker" in problems[0]
    terms = {(t.regex.pattern, t.regex.flags) for m in MARKERS
             for ts in (m.terms, m.excepts) if ts for t in ts.terms}
    items = list(terms)
    assert vet([(p, f & ~re.UNICODE, False) for p, f in items], size=10_000,
               seconds=3.0) == []
