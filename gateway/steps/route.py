"""Step: send the staff copy to the category's team(s), and to on-call when urgent.

The staff copy is a new message built from the extracted text, never the original with
parts cut out.  All copies of one thread reference one thread id, so staff mail clients
group them.
"""
from __future__ import annotations

from gateway import outbox
from gateway.auth.verdict import results_header
from gateway.clock import human, rfc5322
from gateway.content.filenames import shown_name
from gateway.steps.classify import subject_of
from gateway.steps.thread import thread_token


def removed_names(stripped) -> list[str]:
    """Every removed item's name as the sender gave it (unnamed ones by their type)."""
    return [item.filename or f"(unnamed {item.declared_type})" for item in stripped.removed]


def header_to(services, recipient: str) -> str:
    """The To header: the team address, or for an IMAP folder target (``imap:NAME``,
    delivered by APPEND) the portal address named after the folder."""
    if not recipient.startswith("imap:"):
        return recipient
    return services.addresses.header_address(f"Portal folder {recipient[5:]}",
                                             services.addresses.portal)


def proxy_headers(ctx) -> dict:
    """``X-Portal-Proxy: id=N; relation=R; scope=within|outside`` on a proxy's message."""
    if ctx.proxy is None:
        return {}
    return {"X-Portal-Proxy": f"id={ctx.proxy.id}; relation={ctx.proxy.relation}; "
                              f"scope={ctx.scope.word}"}


def proxy_context(ctx) -> dict:
    """The staff copy's proxy line and out-of-scope banner (empty for a patient)."""
    if ctx.proxy is None:
        return {"proxy_line": "", "outside_scope": False, "scope_reasons": ""}
    proxy = ctx.proxy
    return {"proxy_line": f"Sent by {proxy.display_name} ({proxy.relation}), proxy for "
                          f"{ctx.patient.display_name}",
            "outside_scope": not ctx.scope.within,
            "scope_reasons": ", ".join(ctx.scope.reasons)}


def staff_recipients(cfg, category: str, urgent: bool) -> list[str]:
    teams = cfg.team_for(category)
    if urgent:
        teams = teams + [cfg.routing.on_call]
    return list(dict.fromkeys(t.lower() for t in teams))


def route_to_staff(ctx) -> None:
    s, cfg, cls, thread = ctx.services, ctx.services.cfg, ctx.classification, ctx.thread
    prefix = (cfg.routing.urgent_subject_prefix if cls.urgent
              else cfg.routing.subject_prefix).format(category=cls.category)
    staff_addr = s.addresses.make("staff", thread_token(ctx.session, thread, "staff"))
    tz = cfg.practice.timezone
    thread_ref = f"<thread.{thread.public_id}@{s.addresses.domain}>"
    headers = {
        "Reply-To": staff_addr, "X-Portal-Category": cls.category,
        "X-Portal-Urgent": "yes" if cls.urgent else "no",
        "X-Portal-Thread": thread.public_id, "X-Portal-Due": rfc5322(thread.due_at, tz),
        "X-Portal-Rules": " ".join(cls.rule_ids) or "none",
        "X-Portal-Attachments-Removed": str(len(ctx.stripped.removed)),
        "X-Portal-Sender-Auth": ctx.auth.result if ctx.auth else "none",
        "X-Portal-Language": ctx.language.detected if ctx.language else "en",
        "References": thread_ref, "In-Reply-To": thread_ref,
    }
    results = results_header(cfg.gateway.hostname, ctx.auth) if ctx.auth else None
    if results:
        headers["Authentication-Results"] = results
    if cls.urgent:
        headers.update({"Importance": "high", "X-Priority": "1 (Highest)"})
    patient_urgent = bool(getattr(cls, "patient_urgent", False)) and not cls.urgent
    if patient_urgent:
        headers["X-Portal-Patient-Urgent"] = "yes"
    headers.update(proxy_headers(ctx))
    patient = ctx.patient
    for rcpt in staff_recipients(cfg, cls.category, cls.urgent):
        raw = s.notices.build_bytes(
            "staff_copy", sender=s.addresses.header_address(patient.display_name,
                                                            s.addresses.portal),
            to=header_to(s, rcpt), domain=s.addresses.domain, headers=headers,
            subject_prefix=prefix, subject=subject_of(ctx.msg) or "(no subject)",
            urgent=cls.urgent, patient_urgent=patient_urgent, category=cls.category,
            decided_by=cls.decided_by, text=ctx.new_text,
            model_words=", ".join(cls.model.top_words) if cls.model is not None else "",
            history=ctx.history,
            removed_files=[shown_name(n) for n in removed_names(ctx.stripped)],
            patient_name=patient.display_name, account_number=patient.account_number,
            rules=", ".join(f"{h.id} ({h.score:g})" for h in cls.hits) or "none",
            due=human(thread.due_at, tz), **proxy_context(ctx))
        ctx.outgoing.append(outbox.Outgoing(raw, rcpt, "staff_copy", thread.id,
                                            patient.id))
