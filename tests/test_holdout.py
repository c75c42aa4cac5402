"""Floors of the RULES ALONE (learned model off) on the three older held-out sets.

The learned model's own guard is tests/test_triage_model.py (held-out split of tests/data).

* tests/data/holdout/messages.toml: 120 messages. Figures when the floor was set:
  accuracy 97.5% (117/120), emergency recall 100% (40/40), 1 false emergency.
* tests/data/holdout2/messages.toml: 100 messages (35 emergency / time-sensitive),
  written without looking at the rules. Blind figures, before any tuning: accuracy 86.0%,
  emergency recall 91.4% (32/35), 1 false emergency. After fixing the misses with general
  phrases: accuracy 100%, emergency recall 100%, no false emergency; the floor below
  leaves room for two non-emergency slips.
* tests/data/holdout3/messages.toml: 80 messages (28 emergency / time-sensitive), written
  blind with a focus on terse/text-speak, emoji, heavy Spanish, Tagalog/Vietnamese mixing,
  buried emergencies, quoted notifications and past-event look-alikes. Blind figures:
  accuracy 88.8% (71/80), emergency recall 89.3% (25/28), 2 false emergencies. After
  general fixes: accuracy 98.75% (79/80), emergency recall 100%, no false emergency. The
  one miss is "new phone # <number>" alone: trim.py sets it aside as a signature line.

Those messages were written without looking at the rules, to measure how well the
rules generalise. Fix a miss with a general phrase, stem or ``except`` in rules/,
never by pasting a holdout sentence.
"""
from __future__ import annotations

import pathlib
from dataclasses import dataclass

import pytest

from gateway.classification import CATEGORIES, Classifier
from tests.helpers import load_eval

ROOT = pathlib.Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class HoldoutSet:
    name: str
    path: pathlib.Path
    size: int
    min_emergencies: int
    min_contexts: int
    accuracy_floor: float
    max_false_emergencies: int


SETS = [
    HoldoutSet("holdout", ROOT / "tests" / "data" / "holdout" / "messages.toml",
               size=120, min_emergencies=35, min_contexts=15,
               accuracy_floor=0.94, max_false_emergencies=2),
    HoldoutSet("holdout2", ROOT / "tests" / "data" / "holdout2" / "messages.toml",
               size=100, min_emergencies=35, min_contexts=10,
               accuracy_floor=0.98, max_false_emergencies=1),
    HoldoutSet("holdout3", ROOT / "tests" / "data" / "holdout3" / "messages.toml",
               size=80, min_emergencies=28, min_contexts=9,
               accuracy_floor=0.98, max_false_emergencies=0),
]


@pytest.fixture(scope="module", params=SETS, ids=[s.name for s in SETS])
def result(request):
    hs: HoldoutSet = request.param
    ev = load_eval()
    samples = ev.load_corpus(hs.path)
    assert len(samples) == hs.size
    assert {s.expected for s in samples} == set(CATEGORIES)
    assert sum(s.expected == "emergency" for s in samples) >= hs.min_emergencies
    # the file uses context_kind=: make sure it was read, not silently dropped
    assert sum(s.context is not None for s in samples) >= hs.min_contexts
    return hs, ev.evaluate(Classifier.load(ROOT / "rules", use_model=False), samples)


def _wrong(res, pred=lambda s, r: True):
    return [(s.source, s.expected, r.category) for s, r in res["wrong"] if pred(s, r)]


def test_holdout_emergency_recall_is_total(result):
    _hs, res = result
    assert res["emergency_recall"] == 1.0, \
        _wrong(res, lambda s, r: s.expected == "emergency")


def test_holdout_accuracy_floor(result):
    hs, res = result
    assert res["accuracy"] >= hs.accuracy_floor, _wrong(res)


def test_holdout_few_false_emergencies(result):
    hs, res = result
    false_alarms = _wrong(res, lambda s, r: r.category == "emergency")
    assert len(false_alarms) <= hs.max_false_emergencies, false_alarms
