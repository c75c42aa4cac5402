"""Step: acknowledge the patient's message with the reply deadline, or send the
emergency notice instead.  Automatic mail is never answered (RFC 3834)."""
from __future__ import annotations

from gateway import outbox
from gateway.clock import human
from gateway.steps.route import removed_names
from gateway.steps.thread import thread_token


def practice_context(cfg) -> dict:
    p = cfg.practice
    return {"practice_name": p.name, "office_phone": p.office_phone,
            "office_hours": p.office_hours, "after_hours_line": p.after_hours_line,
            "after_hours_name": p.after_hours_name, "portal_url": cfg.gateway.portal_url}


def acknowledge_patient(ctx) -> None:
    if ctx.automatic or (ctx.auth is not None and ctx.auth.result == "fail"):
        return  # never answer automatic mail; never answer a suspected spoof
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
        removed_files=removed_names(ctx.stripped), **practice_context(cfg))
    outbox.enqueue(ctx.session, s.addresses, msg, patient.email, name, thread.id,
                   patient.id)
