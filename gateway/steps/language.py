"""Steps: guess the language of the patient's new text (a content step, before the
transaction), then choose the language of the mail the patient gets back (the roster's
language, else that guess when sure, else English; see gateway.language)."""
from __future__ import annotations

from gateway.language import choose, detect


def guess_language(ctx) -> None:
    """Content step: the language the new text is written in (no database)."""
    ctx.language_guess = detect(ctx.new_text)


def choose_language(ctx) -> None:
    # no guess when no content phase ran (a caller building contexts by hand)
    ctx.language = choose(getattr(ctx.patient, "language", None), ctx.new_text,
                          ctx.language_guess)
