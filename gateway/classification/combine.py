"""The decision when the learned model votes (rules/README.md, "How a decision is made").

1. `emergency` when the model's emergency probability reaches its threshold, or when
   the red-flag rules (emergency rules that are not flags) score `emergency_min_score`
   and the model does not rule an emergency out (its probability is at least
   `red_flag_model_floor`, 0.1 by default): rules can raise a message to emergency,
   never lower it.
2. Otherwise an ops rule with ``pin = true`` that matched decides the category (the
   heaviest pin wins).
3. Otherwise the model's most probable non-emergency category, when its probability
   reaches the model's ``min_confidence``; below that the message is `other` (triage).

A text in a language the gateway does not read, with no danger word of
``rules/unread.toml`` (the pseudo-rule ``unread-language``), is never raised by the
model's vote: it has no words to go on there (classification/unread.py).
"""
from __future__ import annotations

from .model import CATEGORIES, EMERGENCY, OTHER, Classification, RuleHit, Settings
from .unread import QUIET_ID


def category_scores(hits: list[RuleHit]) -> dict:
    scores = {c: 0.0 for c in CATEGORIES}
    for h in hits:
        scores[h.category] = round(scores[h.category] + h.score, 3)
    return scores


def red_flag_score(hits: list[RuleHit], sure_only: bool = False) -> float:
    """The red-flag rules' score (with *sure_only*: of those the model cannot overrule)."""
    return sum(h.score for h in hits if h.category == EMERGENCY and h.flag is None
               and not (sure_only and h.second_opinion))


def red_flag_raises(hits: list[RuleHit], settings: Settings, emergency_p: float,
                    model_read: bool = True) -> bool:
    """Red flags reach `emergency_min_score` and the model does not rule an emergency
    out: its probability reaches the floor, or enough of them need no second opinion, or
    the model did not read the text well enough to give one (*model_read* False: too
    long or too few words, `features.model_reads`)."""
    need = settings.emergency_min_score
    return red_flag_score(hits) >= need and (
        not model_read or emergency_p >= settings.red_flag_model_floor
        or red_flag_score(hits, sure_only=True) >= need)


def pinned(hits: list[RuleHit]) -> str | None:
    pins = [h for h in hits if h.pin]
    return max(pins, key=lambda h: h.score).category if pins else None


def flags_of(hits: list[RuleHit], category: str) -> tuple[str, ...]:
    """Flags of matching flag rules; a message already in `emergency` needs none."""
    if category == EMERGENCY:
        return ()
    return tuple(dict.fromkeys(h.flag for h in hits if h.flag))


def model_hit(vote, category: str, model) -> RuleHit:
    """The model's vote as a pseudo-rule, e.g. ``model-emergency:0.91``."""
    p = vote.emergency if category == EMERGENCY else vote.probabilities.get(category, 0.0)
    if category == OTHER and p < model.min_confidence:
        category, p = _best_routine(vote)
    words = ", ".join(vote.top_words) or "none"
    return RuleHit(f"model-{category}:{p:.2f}", category, round(p, 2),
                   f"learned model (emergency {vote.emergency:.2f}, threshold "
                   f"{model.emergency_threshold:.2f}); top words: {words}")


def _best_routine(vote) -> tuple[str, float]:
    return max(((c, p) for c, p in vote.probabilities.items() if c != EMERGENCY),
               key=lambda cp: cp[1])


def combine(hits: list[RuleHit], settings: Settings, vote, model,
            model_read: bool = True) -> Classification:
    scores = category_scores(hits)
    red = red_flag_raises(hits, settings, vote.emergency, model_read)
    pin = pinned(hits)
    # Text in a language nobody here reads, with no danger word: the model's emergency
    # vote there is noise (it has no words to go on), so only its routine sorting counts.
    unread_quiet = any(h.id == QUIET_ID for h in hits)
    if vote.emergency >= model.emergency_threshold and not unread_quiet:
        category, by = EMERGENCY, "model"
    elif red or pin == EMERGENCY:
        category, by = EMERGENCY, "red-flag" if red else "pin"
    elif pin is not None:
        category, by = pin, "pin"
    else:
        best, p = _best_routine(vote)
        category, by = (best if p >= model.min_confidence else OTHER), "model"
    shown = model_hit(vote, category if by == "model" else _best_routine(vote)[0], model)
    return Classification(category=category, urgent=category == EMERGENCY,
                          hits=(shown,) + tuple(hits), scores=scores, decided_by=by,
                          model=vote, flags=flags_of(hits, category))
