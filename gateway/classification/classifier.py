"""The Classifier: rules (and the learned model) loaded once, then classify() many times."""
from __future__ import annotations

import pathlib
from dataclasses import dataclass

from . import confidential, danger, unread
from .combine import combine
from .features import char_grams, context_features, model_reads, word_features
from .learned import DEFAULT_PATH, NO_GRAMS, LearnedModel
from .matcher import context_hit, decide, score_indexed, strip_subject_prefixes
from .model import Classification, Rule, Settings
from .rules import load_rules
from .text import TextIndex, normalize


class Classifier:
    """Classify a patient's new text into one of CATEGORIES, explainably."""

    def __init__(self, rules: list[Rule], settings: Settings | None = None,
                 model: LearnedModel | None = None, markers: tuple = (),
                 danger_words: "danger.DangerWords | None" = None):
        self.rules = list(rules)
        self.settings = settings or Settings()
        self.model = model
        self.markers = tuple(markers)  # confidential markers (rules/confidential.toml)
        self.danger = danger_words  # danger words of unread languages (rules/unread.toml)
        self._max_chars = 0 if model is None else int(model.config.get("max_chars", 6000))

    @classmethod
    def load(cls, rules_dir: pathlib.Path, model_path: pathlib.Path | None = None,
             use_model: bool | None = None) -> "Classifier":
        """Read and validate ``rules_dir/*.toml`` and, unless ``[settings] model = false``
        (or *use_model* is False), the learned model; raises RuleError."""
        rules, settings = load_rules(pathlib.Path(rules_dir))
        wanted = settings.model if use_model is None else use_model
        model = LearnedModel.load(model_path or DEFAULT_PATH) if wanted else None
        rules_dir = pathlib.Path(rules_dir)
        return cls(rules, settings, model, confidential.load(rules_dir), danger.load(rules_dir))

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
        text, subject = text or "", strip_subject_prefixes(subject or "")
        # One normalised text and one index of it serve the rules and the markers; an
        # empty subject gets none.
        norm, norm_subject = normalize(text), normalize(subject)
        index = TextIndex(norm)
        subject_index = TextIndex(norm_subject) if norm_subject else None
        hits = score_indexed(self.rules, self.settings, index, subject_index)
        if self.settings.unread_language_urgent and unread.is_unread(text):
            hits.append(unread.hit(self.settings.emergency_min_score, text, self.danger))
        feats, grams = (None, NO_GRAMS) if self.model is None else self._features(
            text, norm, norm_subject)
        # The model reads only the first max_chars of a long text, and hardly anything of a
        # few words: what it did not read it cannot rule out, so a red flag raises then
        # without its second opinion.
        seen_all = self.model is None or model_reads(text, self.model.config, norm)
        indexes = (index,) if subject_index is None else (index, subject_index)
        return Scored(tuple(hits), feats, seen_all,
                      confidential=confidential.find_indexed(self.markers, *indexes),
                      grams=grams)

    def _features(self, text: str, norm: str, norm_subject: str) -> tuple[frozenset, tuple]:
        """The model's features of the text but its character n-grams, which are tallied
        per word (grams.py) where the model allows it, and that tally."""
        config = self.model.config
        if len(text) > self._max_chars:  # the model reads the first max_chars only
            norm = normalize(text[:self._max_chars])
        feats, words, unique = word_features(norm, norm_subject, None, config)
        if words and self.model.grams is not None:
            return frozenset(feats), self.model.grams.tally(words, unique)
        feats.update(char_grams(words, int(config.get("char", 4))))
        return frozenset(feats), NO_GRAMS

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
        vote = self.model.vote_features(scored.features or frozenset(),
                                        extra=context_features(context_kind),
                                        grams=scored.grams)
        return combine(hits, self.settings, vote, self.model, scored.model_saw_all)


@dataclass(frozen=True)
class Scored:
    """What `Classifier.score` found in a text, for `Classifier.decide`."""
    hits: tuple
    features: frozenset | None  # the learned model's features (None without a model)
    model_saw_all: bool = True  # False: too long or too short for the model's opinion
    confidential: tuple = ()  # topics the confidential markers found (text or subject)
    # the character n-grams left out of `features`, tallied (grams.Grams.tally)
    grams: tuple = NO_GRAMS
