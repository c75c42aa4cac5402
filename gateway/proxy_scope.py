"""What a proxy may write about and receive: its scope of categories, and the minor rule.

* A proxy's scope is the list of category ids it was imported with; an empty scope is the
  default, ``appointment billing demographics surgery``.
* ``emergency`` is always within scope: whoever writes about an emergency is heard.
* For a patient aged 12 to 17, or whose birth date the roster does not give, anything the
  confidential markers find (pregnancy, contraception, STI, sexual or mental health:
  care a California minor consents to alone) is outside every proxy's scope, and so are
  ``medical_question`` and ``results`` whatever the scope says.

Pure: no database, no I/O.  The same decision serves admission (the banner on the staff
copy), staff answers (hold or relay), notifications and ``inspect --proxy``.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

DEFAULT_SCOPE = ("appointment", "billing", "demographics", "surgery")
ALWAYS = ("emergency",)
MINOR_EXCLUDED = ("medical_question", "results")
MINOR_AGES = range(12, 18)


def age_on(birth_date: str | None, today: dt.date) -> int | None:
    """Whole years since an ISO birth date; None when missing or unreadable."""
    try:
        born = dt.date.fromisoformat((birth_date or "").strip())
    except ValueError:
        return None
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


def minor_rules_apply(birth_date: str | None, today: dt.date) -> bool:
    """True for a patient aged 12-17, and for one whose age is unknown (the safe side)."""
    age = age_on(birth_date, today)
    return age is None or age in MINOR_AGES


def scope_of(proxy) -> tuple[str, ...]:
    return tuple(proxy.scope.split()) if proxy.scope else DEFAULT_SCOPE


def effective_scope(proxy, minor: bool) -> tuple[str, ...]:
    scope = scope_of(proxy)
    if minor:
        scope = tuple(c for c in scope if c not in MINOR_EXCLUDED)
    return scope


@dataclass(frozen=True)
class ScopeDecision:
    within: bool
    scope: tuple[str, ...]
    minor: bool
    reasons: tuple[str, ...] = ()  # e.g. "category:medical_question", "confidential:sti"

    @property
    def word(self) -> str:
        return "within" if self.within else "outside"


def decide(proxy, birth_date: str | None, category: str | None,
           confidential: tuple[str, ...] | list[str], today: dt.date) -> ScopeDecision:
    """Is a message (or answer, or notification) of CATEGORY whose text the confidential
    markers found CONFIDENTIAL within this proxy's scope?"""
    minor = minor_rules_apply(birth_date, today)
    scope = effective_scope(proxy, minor)
    reasons = []
    if category and category not in scope and category not in ALWAYS:
        reasons.append(f"category:{category}")
    if minor:
        reasons.extend(f"confidential:{topic}" for topic in dict.fromkeys(confidential))
    return ScopeDecision(not reasons, scope, minor, tuple(reasons))
