"""inspect: the content steps (attachment removal, classification) on saved messages,
offline: nothing is stored or sent."""
from __future__ import annotations

import json
from pathlib import Path

from gateway.cli.common import CommandError, add_config, config_from


def register(sub) -> None:
    p = sub.add_parser("inspect", help="explain how saved .eml files would be handled "
                       "(offline)")
    add_config(p)
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--context-kind", default=None, metavar="KIND",
                   help="pretend the message replies to a notification of this kind")
    p.add_argument("--proxy", metavar="ACCOUNT", help="also show the scope decision for "
                   "each proxy of the patient with this account number (reads the roster)")
    p.add_argument("files", nargs="+", metavar="FILE.eml", help="saved messages (raw RFC "
                   "5322, as a mail client's 'save as' or a Maildir file)")
    p.set_defaults(func=cmd_inspect)


def inspect_bytes(classifier, raw: bytes, context_kind: str | None = None,
                  cfg=None) -> dict:
    """The content steps of the pipeline, the same ones `ingest` runs, on one message."""
    from types import SimpleNamespace

    from gateway.config import SmtpSection
    from gateway.decisions import Reject
    from gateway.pipeline import Inbound, content
    smtp = cfg.smtp if cfg is not None else SmtpSection()
    services = SimpleNamespace(cfg=SimpleNamespace(smtp=smtp), classifier=classifier)
    try:
        ctx = content(services, Inbound(raw=raw, mail_from="", rcpt_tos=[], source="inspect"))
    except Reject as decision:
        raise ValueError(f"refused: {decision.reply}") from None
    if ctx.content_error is not None:
        raise ctx.content_error
    cls = classifier.decide(ctx.scores, context_kind=context_kind)
    text = ctx.new_text + (f"\n\n{ctx.history}" if ctx.history else "")
    return {
        "category": cls.category, "urgent": cls.urgent, "rules": cls.rule_ids,
        "decided_by": cls.decided_by, "patient_urgent": cls.patient_urgent,
        "model": _model_vote(cls.model),
        "scores": [{"id": h.id, "category": h.category, "score": h.score, "reason": h.reason}
                   for h in cls.hits],
        "attachments": [{"filename": a.filename, "declared_type": a.declared_type,
                         "sniffed_type": a.sniffed_type, "size": a.size, "sha256": a.sha256,
                         "reason": a.reason} for a in ctx.stripped.removed],
        "confidential": list(ctx.scores.confidential),
        "text": text,
    }


def _model_vote(vote) -> dict | None:
    if vote is None:
        return None
    return {"category": vote.category, "probability": round(vote.probability, 4),
            "emergency": round(vote.emergency, 4), "top_words": list(vote.top_words)}


_DECIDED = {"model": "the learned model", "red-flag": "a red-flag rule (raised to emergency)",
            "pin": "a rule with pin = true", "rules": "the rules (learned model off)"}


def _human(result: dict) -> str:
    lines = [f"== {result['file']}"]
    if "error" in result:
        return "\n".join(lines + [f"error: {result['error']}"])
    lines.append(f"category: {result['category']}   urgent: "
                 f"{'yes' if result['urgent'] else 'no'}"
                 + ("   patient marked urgent" if result.get("patient_urgent") else ""))
    lines.append(f"decided by: {_DECIDED.get(result['decided_by'], result['decided_by'])}")
    for hit in result["scores"]:
        lines.append(f"  rule {hit['id']} -> {hit['category']} +{hit['score']:g}: "
                     f"{hit['reason']}")
    for a in result["attachments"]:
        lines.append(f"  removed {a['filename'] or '(no name)'} declared {a['declared_type']}"
                     f" sniffed {a['sniffed_type']} {a['size']} bytes ({a['reason']})")
    if result.get("confidential"):
        lines.append(f"confidential: {', '.join(result['confidential'])}")
    for p in result.get("proxies", ()):
        lines.append(f"proxy {p['proxy']} ({p['relation']}) scope {' '.join(p['scope'])}: "
                     f"{p['decision']}" + (f" ({', '.join(p['reasons'])})" if p['reasons']
                                          else ""))
    lines += ["--- text staff would receive ---", result["text"].rstrip()]
    return "\n".join(lines)


def cmd_inspect(args) -> int:
    from gateway.classification import Classifier, RuleError
    cfg = config_from(args, required=False)
    try:
        classifier = Classifier.load(cfg.rules_dir)
    except RuleError as e:
        raise CommandError(str(e), 2) from None
    proxies = _proxies_of(args) if args.proxy else None
    failed = 0
    for name in args.files:
        result = {"file": name}
        try:
            result.update(inspect_bytes(classifier, Path(name).read_bytes(),
                                        args.context_kind, cfg))
            if proxies is not None:
                result["proxies"] = _scope_decisions(proxies, result)
        except Exception as e:  # one bad file must not stop the run
            failed += 1
            result["error"] = f"{type(e).__name__}: {e}"
        print(json.dumps(result, ensure_ascii=False) if args.json else _human(result))
    return 1 if failed else 0


def _proxies_of(args) -> tuple:
    """(birth date, [(id, relation, scope)]) of the patient's active proxies (read only)."""
    from types import SimpleNamespace

    from sqlalchemy import select

    from gateway.cli.common import services_from
    from gateway.models import Patient, Proxy
    services = services_from(args)
    try:
        with services.factory() as session:
            patient = session.scalar(select(Patient).where(
                Patient.account_number == args.proxy.strip()))
            if patient is None:
                raise CommandError(f"no patient with account {args.proxy}")
            rows = [SimpleNamespace(id=p.id, relation=p.relation, scope=p.scope)
                    for p in session.scalars(select(Proxy).where(
                        Proxy.patient_id == patient.id, Proxy.status == "active")
                        .order_by(Proxy.id))]
            return patient.birth_date, rows
    finally:
        services.close()


def _scope_decisions(proxies: tuple, result: dict) -> list[dict]:
    from gateway.clock import utcnow
    from gateway.proxy_scope import decide
    birth_date, rows = proxies
    out = []
    for proxy in rows:
        d = decide(proxy, birth_date, result["category"], result["confidential"],
                   utcnow().date())
        out.append({"proxy": proxy.id, "relation": proxy.relation, "scope": list(d.scope),
                    "minor_rules": d.minor, "decision": d.word, "reasons": list(d.reasons)})
    return out
