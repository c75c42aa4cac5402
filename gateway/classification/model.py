"""Data types of the classifier: categories, rule hits, results, rule errors."""
from __future__ import annotations

from dataclasses import dataclass, field

CATEGORIES: tuple[str, ...] = (
    "appointment",
    "medical_question",
    "results",
    "billing",
    "surgery",
    "demographics",
    "emergency",
    "other",
)

EMERGENCY = "emergency"
OTHER = "other"
PATIENT_URGENT = "patient-urgent"
FLAGS = (PATIENT_URGENT,)


class RuleError(Exception):
    """A rule file is invalid. The message names the file and, where known, the rule id."""

    def __init__(self, path: str, message: str, rule_id: str | None = None):
        self.path = path
        self.rule_id = rule_id
        self.detail = message
        where = f"{path}: rule {rule_id!r}: " if rule_id else f"{path}: "
        super().__init__(where + message)


@dataclass(frozen=True)
class RuleHit:
    id: str
    category: str
    score: float
    reason: str
    pin: bool = False  # an ops rule that pins the category when it matches
    flag: str | None = None  # a rule that marks the message (e.g. "patient-urgent")
    second_opinion: bool = True  # False: a red flag the model's floor does not apply to


@dataclass(frozen=True)
class Classification:
    category: str
    urgent: bool
    hits: tuple[RuleHit, ...]
    scores: dict
    decided_by: str = "rules"  # rules | model | red-flag | pin
    model: object = None  # learned.Vote when the learned model voted
    flags: tuple[str, ...] = ()

    @property
    def patient_urgent(self) -> bool:
        """The patient called a non-emergency message urgent."""
        return PATIENT_URGENT in self.flags

    @property
    def rule_ids(self) -> list[str]:
        return [h.id for h in self.hits]

    def explain(self) -> str:
        """One line per hit plus the category totals, for logs and the CLI."""
        lines = [f"category={self.category} urgent={'yes' if self.urgent else 'no'}"]
        for h in self.hits:
            lines.append(f"  {h.id} ({h.category}) +{h.score:g}: {h.reason}")
        totals = ", ".join(f"{c}={s:g}" for c, s in sorted(
            self.scores.items(), key=lambda kv: -kv[1]) if s)
        lines.append(f"  scores: {totals or 'none'}")
        return "\n".join(lines)


@dataclass(frozen=True)
class Rule:
    """A validated, compiled rule."""

    id: str
    category: str
    weight: float
    reason: str
    source: str
    terms: object  # text.TermSet: compiled phrases and patterns
    requires: object | None = None  # text.TermSet
    excepts: object | None = None  # text.TermSet
    situation: object | None = None  # text.TermSet: any of the named situations
    situation_names: tuple = ()
    negatable: bool = True
    subject: bool = True
    pin: bool = False
    flag: str | None = None
    second_opinion: bool = True  # False: a red flag the model cannot overrule
    child_counts: bool = False  # True: a small child's sign counts too (poisoning)


@dataclass(frozen=True)
class Settings:
    """Scoring knobs; ops may override them in a [settings] table."""

    min_score: float = 2.0
    emergency_min_score: float = 3.0
    subject_factor: float = 0.5
    emergency_subject_factor: float = 1.0
    context_weight: float = 1.5
    model: bool = True  # false: rules only, as before the learned model
    # With the model on, a red-flag rule raises a message to emergency only when the
    # model's emergency probability is at least this (docs/triage-model.md, "Red-flag
    # rules need a second opinion"); 0 lets every red-flag rule raise on its own.
    red_flag_model_floor: float = 0.1
    # A text written in a language the gateway does not read is raised to emergency
    # (classification/unread.py): nothing can rule an emergency out.
    unread_language_urgent: bool = True
    context: dict = field(default_factory=lambda: {
        "lab_result": "results",
        "radiology_result": "results",
        "appointment_reminder": "appointment",
        "statement": "billing",
        "surgery_scheduling": "surgery",
    })
