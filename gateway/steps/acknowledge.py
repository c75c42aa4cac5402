"""Step: acknowledge the patient's message with the reply deadline, or send the
emergency notice instead (§7).  Automatic mail is never answered (RFC 3834).

The removed attachments are named only when the sender passed authentication (a stranger
must not write words of their own into the practice's mail), cleaned and capped by
gateway.content.filenames; otherwise the mail only says how many were removed."""
from __future__ import annotations

from gateway import outbox
from gateway.clock import human
from gateway.content.filenames import listed
from gateway.steps.route import removed_names
from gateway.steps.thread import thread_token


def practice_context(cfg) -> dict:
    p = cfg.practice
    return {"practice_name": p.name, "office_phone": p.office_phone,
            "office_hours": p.office_hours, "after_hours_line": p.after_hours_line,
            "after_hours_name": p.after_hours_name, "portal_url": cfg.gateway.portal_url}


def removed_for_patient(ctx) -> dict:
    names = removed_names(ctx.stripped)
    authenticated = ctx.auth is not None and ctx.auth.result == "pass"
    shown, more = listed(names) if authenticated else ([], 0)
    return {"removed_files": shown, "removed_more": more, "removed_count": len(names)}


def acknowledge_patient(ctx) -> None:
    if ctx.automatic or ctx.unverified:
        return  # never answer automatic mail, nor mail whose sender is not authenticated
    s, cfg, thread, patient = ctx.services, ctx.services.cfg, ctx.thread, ctx.patient
    name = "emergency" if ctx.classification.urgent else "ack"
    reply_addr = s.addresses.make("reply", thread_token(ctx.session, thread, "reply"))
    headers = {"Reply-To": reply_addr, "Auto-Submitted": "auto-replied"}
    original = str(ctx.msg.get("Message-ID", "") or "").strip()
    if original:
        headers.update({"In-Reply-To": original, "References": original})
    msg = s.notices.build(
        name, sender=s.addresses.header_address(cfg.practice.name, s.addresses.portal),
        to=s.addresses.header_address(patient.display_name, patient.email),
        domain=s.addresses.domain, headers=headers, patient_name=patient.display_name,
        due=human(thread.due_at, cfg.practice.timezone),
        **removed_for_patient(ctx), **practice_context(cfg))
    outbox.enqueue(ctx.session, s.addresses, msg, patient.email, name, thread.id,
                   patient.id)
