"""Matching rules against text: live matches, scoring and the final decision."""
from __future__ import annotations

import re

from .combine import category_scores, flags_of, pinned, red_flag_score
from .qualifiers import gap_negated, not_now, sign_not_now
from .index import Cached
from .text import TermSet, TextIndex, iter_matches, iter_term_matches
from .model import EMERGENCY, OTHER, Classification, Rule, RuleHit, Settings

# A negation reaches a context word (situation, second sign) only from close by.
_CONTEXT_NEGATION_WORDS = 3
_SUBJECT_PREFIX = re.compile(r"^\s*+(?:(?:re|fw|fwd|rv|tr|aw|wg)\s*+(?:\[\d+\]\s*+)?:\s*+)+",
                             re.IGNORECASE)


def strip_subject_prefixes(subject: str) -> str:
    return _SUBJECT_PREFIX.sub("", subject or "")


def _in_except(rule: Rule, index: TextIndex, start: int, end: int) -> bool:
    if rule.excepts is None:
        return False
    # The except phrases' places are found once per text and rule, as far as needed.
    key = ("except", id(rule.excepts))
    spans = index.memo.get(key)
    if spans is None:
        spans = index.memo[key] = Cached(
            (m.start(), m.end()) for m in iter_matches(rule.excepts, index))
    return any(s <= start and end <= e for s, e in spans)


def _live_match(terms: TermSet, index: TextIndex, negatable: bool,
                rule: Rule | None = None) -> re.Match | None:
    for term, m in iter_term_matches(terms, index):
        if rule is not None and _in_except(rule, index, m.start(), m.end()):
            continue
        child = rule is not None and rule.child_counts
        if negatable and (sign_not_now(index.text, m.start(), m.end(), child)
                          or (term.gaps and gap_negated(m))):
            continue
        return m
    return None


def _mentioned(rule: Rule, index: TextIndex) -> bool:
    """True if the rule's words appear in the text at all (live, discounted or excepted)."""
    return any(True for _ in iter_matches(rule.terms, index))


def rule_matches(rule: Rule, index: TextIndex) -> bool:
    """The rule's phrase matches, live (not negated, past or hypothetical when the rule
    is negatable), and so do one of its ``requires`` and one of its ``situation`` terms."""
    if not index.text:
        return False
    main = _live_match(rule.terms, index, rule.negatable, rule)
    if main is None:
        return False
    if rule.requires is not None and not _also_live(rule.requires, index, rule, main):
        return False
    return rule.situation is None or _also_live(rule.situation, index, rule, main)


def _also_live(terms: TermSet, index: TextIndex, rule: Rule, main: re.Match) -> bool:
    # Many rules share one situation ("pregnancy"): its matches are found once per text,
    # and only as far as a rule needed to look (the first live one usually settles it).
    key = (id(terms), rule.negatable)
    spans = index.memo.get(key)
    if spans is None:
        spans = index.memo[key] = Cached(
            (m.start(), m.end(), rule.negatable and not_now(
                index.text, m.start(), m.end(), _CONTEXT_NEGATION_WORDS))
            for m in iter_matches(terms, index))
    return any(not discounted or (main.start() <= start and end <= main.end())
               for start, end, discounted in spans)


def score_rules(rules: list[Rule], settings: Settings, text: str,
                subject: str) -> list[RuleHit]:
    """Hits of every rule on the (normalised) text, then on the subject.

    A negatable (emergency) rule that matches the subject does not count when the text
    names the same sign only as negated, past or hypothetical: the text tells the whole
    story ("Subject: bleeding question" / "I bled a lot with my first baby").
    A rule that matches the subject but not the text counts ``subject_factor``
    of its weight (``emergency_subject_factor`` for emergency rules); when no
    rule matches the text at all, subject hits count in full.
    """
    return score_indexed(rules, settings, TextIndex(text),
                         TextIndex(subject) if subject else None)


def score_indexed(rules: list[Rule], settings: Settings, text_index: TextIndex,
                  subject_index: TextIndex | None) -> list[RuleHit]:
    """`score_rules` over texts already indexed (None: no subject)."""
    hits = [RuleHit(r.id, r.category, r.weight, r.reason, r.pin, r.flag,
                    r.second_opinion)
            for r in rules if rule_matches(r, text_index)]
    if subject_index is None or not subject_index.text:
        return hits
    matched = {h.id for h in hits}
    for rule in rules:
        if rule.id in matched or not rule.subject or not rule_matches(rule, subject_index):
            continue
        if rule.negatable and _mentioned(rule, text_index):
            continue  # the text tells the subject's words in full: negated, past, "what if",
            # or in another sense ("Subject: water broke" / "our water heater broke")
        factor = 1.0 if not matched else (
            settings.emergency_subject_factor if rule.category == EMERGENCY
            else settings.subject_factor)
        if factor > 0:
            hits.append(RuleHit(rule.id, rule.category, round(rule.weight * factor, 3),
                                rule.reason + " (in subject)", rule.pin, rule.flag,
                                rule.second_opinion))
    return hits


def context_hit(settings: Settings, context_kind: str | None,
                hits: list[RuleHit]) -> RuleHit | None:
    """The lean given by the notification being replied to.

    The context raises its category's score to at least ``context_weight``; it
    does not add to words of that same category in the text, because a reply
    to a lab notification naturally mentions "results".  Clear text of another
    category therefore wins over the context.
    """
    category = settings.context.get(context_kind or "")
    if not category or settings.context_weight <= 0:
        return None
    text_score = sum(h.score for h in hits if h.category == category)
    rid = "context-" + re.sub(r"[^a-z0-9]+", "-", context_kind.lower()).strip("-")
    return RuleHit(rid, category, round(max(0.0, settings.context_weight - text_score), 3),
                   f"reply to a {context_kind} notification (leans to {category})")


def decide(hits: list[RuleHit], settings: Settings) -> Classification:
    """Rules only (the learned model is off): the scores decide, a pin beats a score."""
    scores = category_scores(hits)
    category = _pick(scores, settings, red_flag_score(hits))
    pin = pinned(hits)
    by = "rules"
    if pin is not None and (category != EMERGENCY or pin == EMERGENCY):
        category, by = pin, "pin"
    return Classification(category=category, urgent=category == EMERGENCY,
                          hits=tuple(hits), scores=scores, decided_by=by,
                          flags=flags_of(hits, category))


def _pick(scores: dict, settings: Settings, red: float) -> str:
    # A flag rule (e.g. the patient's own "urgent") is shown but never raises a message to
    # emergency: only red-flag rules count towards emergency_min_score.
    if red >= settings.emergency_min_score:
        return EMERGENCY
    ranked = sorted(((s, c) for c, s in scores.items() if c != EMERGENCY), reverse=True)
    (best, category), (second, _) = ranked[0], ranked[1]
    if best < settings.min_score or best == second:
        return OTHER
    return category
