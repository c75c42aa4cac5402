"""Matching rules against text: negation, scoring and the final decision."""
from __future__ import annotations

import re

from .combine import category_scores, flags_of, pinned
from .text import TermSet, TextIndex, iter_matches
from .model import EMERGENCY, OTHER, Classification, Rule, RuleHit, Settings

# Clause boundaries: a negation never reaches across them.
_BOUNDARY = re.compile(
    r"[.!?;:,()\[\]\"]|(?<!\w)(?:but|and|pero|y|however|although|though|except|until|"
    r"aunque|excepto|hasta|now|ahora|then|luego|since|desde|because|porque)(?!\w)")
# Words that negate what follows them within the same clause (normalised: no apostrophes).
_NEG_BEFORE = re.compile(
    r"(?<!\w)(?:no|not|dont|doesnt|didnt|isnt|arent|wasnt|werent|havent|hasnt|hadnt|"
    r"wont|never|without|denies|deny|denied|nor|neither|negative|free of|"
    r"sin|nunca|ni|tampoco|nada de|ningun|ninguna)(?!\w)")
# Phrases that look like negations but express doubt: they keep the finding alive.
_PSEUDO_NEG = re.compile(
    r"(?<!\w)(?:not sure|dont know|do not know|no idea|not certain|unsure|cant tell|"
    r"not only|no se si|no estoy segur[ao]|no sabia|no se que|no matter|or not|"
    r"wondering|wonder)(?!\w)")
# After the finding: "the bleeding has stopped", "el sangrado ya paro".
_RESOLVED_AFTER = re.compile(
    r"^\W*(?:\w+\W+){0,3}?(?:has |have |had |is |are |finally |already )?"
    r"(?:stopped|went away|gone away|is gone|are gone|resolved|cleared up|"
    r"ya paro|se detuvo|se quito|ya se fue|ya paso)(?!\w)")
_NEG_AFTER_GUARD = re.compile(r"(?<!\w)(?:not|no|never|hasnt|havent|hadnt|didnt|wont|isnt)(?!\w)")
_WINDOW_WORDS = 5
_SUBJECT_PREFIX = re.compile(r"^\s*(?:(?:re|fw|fwd|rv|tr|aw|wg)\s*(?:\[\d+\])?\s*:\s*)+",
                             re.IGNORECASE)


def strip_subject_prefixes(subject: str) -> str:
    return _SUBJECT_PREFIX.sub("", subject or "")


def is_negated(text: str, start: int, end: int) -> bool:
    """True if the match text[start:end] is negated or said to be resolved."""
    before = text[max(0, start - 80):start]
    cut = None
    for cut in _BOUNDARY.finditer(before):
        pass
    if cut is not None:
        before = before[cut.end():]
    window = " ".join(before.split()[-_WINDOW_WORDS:])
    if _PSEUDO_NEG.search(window):
        return False
    if _NEG_BEFORE.search(window):
        return True
    after = text[end:end + 60]
    boundary = _BOUNDARY.search(after)
    if boundary:
        after = after[:boundary.start()]
    resolved = _RESOLVED_AFTER.search(after)
    return bool(resolved) and not _NEG_AFTER_GUARD.search(after[:resolved.end()])


def _in_except(rule: Rule, index: TextIndex, start: int, end: int) -> bool:
    if rule.excepts is None:
        return False
    return any(m.start() <= start and end <= m.end()
               for m in iter_matches(rule.excepts, index))


def _live_match(terms: TermSet, index: TextIndex, negatable: bool,
                rule: Rule | None = None) -> re.Match | None:
    for m in iter_matches(terms, index):
        if rule is not None and _in_except(rule, index, m.start(), m.end()):
            continue
        if negatable and is_negated(index.text, m.start(), m.end()):
            continue
        return m
    return None


def rule_matches(rule: Rule, index: TextIndex) -> bool:
    if not index.text:
        return False
    main = _live_match(rule.terms, index, rule.negatable, rule)
    if main is None:
        return False
    if rule.requires is None:
        return True
    for m in iter_matches(rule.requires, index):
        inside = main.start() <= m.start() and m.end() <= main.end()
        if inside or not (rule.negatable and is_negated(index.text, m.start(), m.end())):
            return True
    return False


def score_rules(rules: list[Rule], settings: Settings, text: str,
                subject: str) -> list[RuleHit]:
    """Hits of every rule on the (normalised) text, then on the subject.

    A rule that matches the subject but not the text counts ``subject_factor``
    of its weight (``emergency_subject_factor`` for emergency rules); when no
    rule matches the text at all, subject hits count in full.
    """
    text_index = TextIndex(text)
    hits = [RuleHit(r.id, r.category, r.weight, r.reason, r.pin, r.flag)
            for r in rules if rule_matches(r, text_index)]
    if not subject:
        return hits
    subject_index, matched = TextIndex(subject), {h.id for h in hits}
    for rule in rules:
        if rule.id in matched or not rule.subject or not rule_matches(rule, subject_index):
            continue
        factor = 1.0 if not matched else (
            settings.emergency_subject_factor if rule.category == EMERGENCY
            else settings.subject_factor)
        if factor > 0:
            hits.append(RuleHit(rule.id, rule.category, round(rule.weight * factor, 3),
                                rule.reason + " (in subject)", rule.pin, rule.flag))
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
    category = _pick(scores, settings)
    pin = pinned(hits)
    by = "rules"
    if pin is not None and (category != EMERGENCY or pin == EMERGENCY):
        category, by = pin, "pin"
    return Classification(category=category, urgent=category == EMERGENCY,
                          hits=tuple(hits), scores=scores, decided_by=by,
                          flags=flags_of(hits, category))


def _pick(scores: dict, settings: Settings) -> str:
    if scores[EMERGENCY] >= settings.emergency_min_score:
        return EMERGENCY
    ranked = sorted(((s, c) for c, s in scores.items() if c != EMERGENCY), reverse=True)
    (best, category), (second, _) = ranked[0], ranked[1]
    if best < settings.min_score or best == second:
        return OTHER
    return category
