"""The Classifier: rules loaded once, then classify() many times."""
from __future__ import annotations

import pathlib

from .matcher import context_hit, decide, score_rules, strip_subject_prefixes
from .model import Classification, Rule, Settings
from .rules import load_rules
from .text import normalize


class Classifier:
    """Classify a patient's new text into one of CATEGORIES, explainably."""

    def __init__(self, rules: list[Rule], settings: Settings | None = None):
        self.rules = list(rules)
        self.settings = settings or Settings()

    @classmethod
    def load(cls, rules_dir: pathlib.Path) -> "Classifier":
        """Read and validate ``rules_dir/*.toml``; raises RuleError."""
        rules, settings = load_rules(pathlib.Path(rules_dir))
        return cls(rules, settings)

    @property
    def rule_ids(self) -> list[str]:
        return [r.id for r in self.rules]

    def classify(self, text: str, subject: str = "",
                 context_kind: str | None = None) -> Classification:
        return self.decide(self.score(text, subject), context_kind)

    def score(self, text: str, subject: str = "") -> list:
        """The rule hits of a text (the costly part; no thread context)."""
        norm_text = normalize(text or "")
        norm_subject = normalize(strip_subject_prefixes(subject or ""))
        return score_rules(self.rules, self.settings, norm_text, norm_subject)

    def decide(self, hits: list, context_kind: str | None = None) -> Classification:
        """The decision over `hits` (from score) and the thread's context (cheap)."""
        hits = list(hits)
        ctx = context_hit(self.settings, context_kind, hits)
        if ctx is not None:
            hits.append(ctx)
        return decide(hits, self.settings)
