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
    lines += ["--- text staff would receive ---", result["text"].rstrip()]
    return "\n".join(lines)


def cmd_inspect(args) -> int:
    from gateway.classification import Classifier, RuleError
    cfg = config_from(args, required=False)
    try:
        classifier = Classifier.load(cfg.rules_dir)
    except RuleError as e:
        raise CommandError(str(e), 2) from None
    failed = 0
    for name in args.files:
        result = {"file": name}
        try:
            result.update(inspect_bytes(classifier, Path(name).read_bytes(),
                                        args.context_kind, cfg))
        except Exception as e:  # one bad file must not stop the run
            failed += 1
            result["error"] = f"{type(e).__name__}: {e}"
        print(json.dumps(result, ensure_ascii=False) if args.json else _human(result))
    return 1 if failed else 0
