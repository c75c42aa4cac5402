"""Step: acknowledge the patient's message with the reply deadline, or send the
emergency notice instead, in the patient's language (the emergency notice in English as
well whenever the language is not English or the guess is unsure).  Each acknowledgement
names the patient's own subject and our reference for the message, and threads to it.
Automatic mail is never answered (RFC 3834).

The removed attachments are named only when the sender passed authentication (a stranger
must not write words of their own into the practice's mail), cleaned and capped by
gateway.content.filenames; otherwise the mail only says how many were removed."""
from __future__ import annotations

import unicodedata

from gateway.content.mime import header_text
from gateway import outbox
from gateway.content.filenames import listed
from gateway.language import ENGLISH, notice_languages
from gateway.notices import PerLanguage
from gateway.steps.classify import subject_of
from gateway.steps.route import removed_names
from gateway.steps.thread import thread_token

SUBJECT_LIMIT = 100
_REPLY_PREFIXES = ("re:", "aw:", "fw:", "fwd:", "rv:", "res:")


def practice_context(cfg) -> dict:
    p = cfg.practice
    hours = PerLanguage({"en": p.office_hours, **p.office_hours_by_language})
    return {"practice_name": p.name, "office_phone": p.office_phone,
            "office_hours": hours, "after_hours_line": p.after_hours_line,
            "after_hours_name": p.after_hours_name, "portal_url": cfg.gateway.portal_url}


def removed_for_patient(ctx) -> dict:
    names = removed_names(ctx.stripped)
    authenticated = ctx.auth is not None and ctx.auth.result == "pass"
    shown, more = listed(names) if authenticated else ([], 0)
    return {"removed_files": shown, "removed_more": more, "removed_count": len(names)}


def clean_subject(raw: str, limit: int = SUBJECT_LIMIT) -> str:
    """The patient's subject fit to quote back: control, format (bidi, zero-width) and
    line-break characters removed, whitespace collapsed, reply prefixes dropped, capped."""
    kept = "".join(" " if unicodedata.category(c) in ("Zl", "Zp") or c in "\r\n\t"
                   else c for c in str(raw or "")
                   if unicodedata.category(c) not in ("Cc", "Cf", "Cs", "Co", "Cn")
                   or c in "\r\n\t")
    text = " ".join(kept.split())
    while text.lower().startswith(_REPLY_PREFIXES):
        text = text.split(":", 1)[1].strip()
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "\u2026"


def message_ref(message) -> str:
    """Our own reference for a stored message, named in its acknowledgement."""
    return f"M-{message.id}"


def _headers(ctx, reply_addr: str) -> dict:
    headers = {"Reply-To": reply_addr, "Auto-Submitted": "auto-replied",
               "X-Portal-Message": message_ref(ctx.message)}
    original = (header_text(ctx.msg, "Message-ID") or "").strip()
    if original and "\n" not in original and len(original) <= 998:
        headers.update({"In-Reply-To": original, "References": original})
    return headers


def acknowledge_patient(ctx) -> None:
    if ctx.automatic or ctx.unverified:
        return  # never answer automatic mail, nor mail whose sender is not authenticated
    s, cfg, thread, patient = ctx.services, ctx.services.cfg, ctx.thread, ctx.patient
    urgent = ctx.classification.urgent
    name = "emergency" if urgent else "ack"
    if not urgent and ctx.scope is not None and not ctx.scope.within:
        name = "ack_proxy_outside"  # the office will call; nothing about why
    writer, address = correspondent(ctx)
    choice = ctx.language
    lang = choice.language if choice else ENGLISH
    languages = notice_languages(choice) if urgent and choice else [lang]
    reply_addr = s.addresses.make("reply", thread_token(ctx.session, thread, "reply"))
    raw = s.notices.build_bytes(
        name, sender=s.addresses.header_address(cfg.practice.name, s.addresses.portal),
        to=s.addresses.header_address(writer, address),
        domain=s.addresses.domain, headers=_headers(ctx, reply_addr), lang=languages,
        patient_name=writer, due=thread.due_at,
        subject=clean_subject(subject_of(ctx.msg)), message_ref=message_ref(ctx.message),
        **removed_for_patient(ctx), **practice_context(cfg))
    ctx.outgoing.append(outbox.Outgoing(raw, address, name, thread.id, patient.id))


def send_outgoing(ctx) -> None:
    """Step: queue every mail the chain decided on, in one statement (gateway.outbox)."""
    outbox.insert_many(ctx.session, ctx.services.addresses, ctx.outgoing)
    ctx.outgoing = []


def correspondent(ctx) -> tuple[str, str]:
    """(name, address) of whoever wrote: the proxy writing for the patient, or the
    patient."""
    if ctx.proxy is not None:
        return ctx.proxy.display_name, ctx.proxy.email
    return ctx.patient.display_name, ctx.patient.email
