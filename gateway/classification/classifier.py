"""The Classifier: rules (and the learned model) loaded once, then classify() many times."""
from __future__ import annotations

import dataclasses
import pathlib
from dataclasses import dataclass

from . import confidential
from .combine import combine
from .features import context_features, feature_set
from .learned import DEFAULT_PATH, LearnedModel
from .matcher import context_hit, decide, score_rules, strip_subject_prefixes
from .model import Classification, Rule, Settings
from .rules import load_rules
from .text import normalize


class Classifier:
    """Classify a patient's new text into one of CATEGORIES, explainably."""

    def __init__(self, rules: list[Rule], settings: Settings | None = None,
                 model: LearnedModel | None = None, markers: tuple = ()):
        self.rules = list(rules)
        self.settings = settings or Settings()
        self.model = model
        self.markers = tuple(markers)  # confidential markers (rules/confidential.toml)

    @classmethod
    def load(cls, rules_dir: pathlib.Path, model_path: pathlib.Path | None = None,
             use_model: bool | None = None) -> "Classifier":
        """Read and validate ``rules_dir/*.toml`` and, unless ``[settings] model = false``
        (or *use_model* is False), the learned model; raises RuleError."""
        rules, settings = load_rules(pathlib.Path(rules_dir))
        wanted = settings.model if use_model is None else use_model
        model = LearnedModel.load(model_path or DEFAULT_PATH) if wanted else None
        return cls(rules, settings, model, confidential.load(pathlib.Path(rules_dir)))

    @property
    def rule_ids(self) -> list[str]:
        return [r.id for r in self.rules]

    def classify(self, text: str, subject: str = "",
                 context_kind: str | None = None) -> Classification:
        return self.decide(self.score(text, subject), context_kind)

    def score(self, text: str, subject: str = "") -> "Scored":
        """The costly part, without the thread's context: the rule hits of a text and the
        learned model's features of it (the content steps run this before the
        transaction opens)."""
        subject = strip_subject_prefixes(subject or "")
        hits = score_rules(self.rules, self.settings, normalize(text or ""),
                           normalize(subject))
        feats = None if self.model is None else frozenset(
            feature_set(text or "", subject, None, self.model.config))
        # The model reads only the first max_chars of a long text: what it did not read
        # it cannot rule out, so a red flag further on raises without its second opinion.
        seen_all = self.model is None or len(text or "") <= int(
            self.model.config.get("max_chars", 6000))
        return Scored(tuple(hits), feats, seen_all,
                      confidential=confidential.find(self.markers, text, subject))

    def confidential(self, text: str, subject: str = "") -> tuple[str, ...]:
        """The confidential topics the markers find in a text (e.g. a staff answer)."""
        return confidential.find(self.markers, text, subject)

    def decide(self, scored: "Scored", context_kind: str | None = None) -> Classification:
        """The decision over `scored` (from score) and the thread's context (cheap)."""
        hits = list(scored.hits)
        ctx = context_hit(self.settings, context_kind, hits)
        if ctx is not None:
            hits.append(ctx)
        if self.model is None:
            return decide(hits, self.settings)
        feats = set(scored.features or ())
        feats.update(context_features(context_kind))
        settings = self.settings if scored.model_saw_all else dataclasses.replace(
            self.settings, red_flag_model_floor=0.0)
        return combine(hits, settings, self.model.vote_features(feats), self.model)


@dataclass(frozen=True)
class Scored:
    """What `Classifier.score` found in a text, for `Classifier.decide`."""
    hits: tuple
    features: frozenset | None  # the learned model's features (None without a model)
    model_saw_all: bool = True  # False: the text was longer than the model reads
    confidential: tuple = ()  # topics the confidential markers found (text or subject)
