"""Step: choose the language of the mail the patient gets back (the roster's language,
else the language of the patient's own new text, else English; see gateway.language)."""
from __future__ import annotations

from gateway.language import choose


def choose_language(ctx) -> None:
    ctx.language = choose(getattr(ctx.patient, "language", None), ctx.new_text)
