"""The Classifier: rules (and the learned model) loaded once, then classify() many times."""
from __future__ import annotations

import pathlib

from .combine import combine
from .learned import DEFAULT_PATH, LearnedModel
from .matcher import context_hit, decide, score_rules, strip_subject_prefixes
from .model import Classification, Rule, Settings
from .rules import load_rules
from .text import normalize


class Classifier:
    """Classify a patient's new text into one of CATEGORIES, explainably."""

    def __init__(self, rules: list[Rule], settings: Settings | None = None,
                 model: LearnedModel | None = None):
        self.rules = list(rules)
        self.settings = settings or Settings()
        self.model = model

    @classmethod
    def load(cls, rules_dir: pathlib.Path, model_path: pathlib.Path | None = None,
             use_model: bool | None = None) -> "Classifier":
        """Read and validate ``rules_dir/*.toml`` and, unless ``[settings] model = false``
        (or *use_model* is False), the learned model; raises RuleError."""
        rules, settings = load_rules(pathlib.Path(rules_dir))
        wanted = settings.model if use_model is None else use_model
        model = LearnedModel.load(model_path or DEFAULT_PATH) if wanted else None
        return cls(rules, settings, model)

    @property
    def rule_ids(self) -> list[str]:
        return [r.id for r in self.rules]

    def classify(self, text: str, subject: str = "",
                 context_kind: str | None = None) -> Classification:
        subject = strip_subject_prefixes(subject or "")
        norm_text = normalize(text or "")
        hits = score_rules(self.rules, self.settings, norm_text, normalize(subject))
        ctx = context_hit(self.settings, context_kind, hits)
        if ctx is not None:
            hits.append(ctx)
        if self.model is None:
            return decide(hits, self.settings)
        vote = self.model.vote(text or "", subject, context_kind)
        return combine(hits, self.settings, vote, self.model)
