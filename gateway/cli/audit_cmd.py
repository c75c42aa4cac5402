"""audit list: the audit trail (every state change with its actor), for HIPAA audit control."""
from __future__ import annotations

import datetime as dt
import re

from gateway.cli.common import (CommandError, add_config, add_json, add_limit, output,
                                services_from)

COLUMNS = ["at", "actor", "action", "object_type", "object_id", "account", "detail"]
EXAMPLES = """examples:
  portal-gateway audit list --patient 1001
  portal-gateway audit list --since 7d --json
  portal-gateway audit list --since 2025-01-01 --action patient.
"""
_AGO = re.compile(r"^(\d+)\s*([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def register(sub) -> None:
    import argparse
    p = sub.add_parser("audit", help="the audit trail")
    asub = p.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    ls = asub.add_parser("list", help="audit rows, oldest first",
                         epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    ls.add_argument("--patient", metavar="ACCOUNT", help="only rows about this patient")
    ls.add_argument("--since", metavar="WHEN",
                    help="ISO date or time (UTC), or an age such as 30m, 24h, 7d, 2w")
    ls.add_argument("--action", metavar="PREFIX",
                    help="only actions starting with this (e.g. patient., message.refused)")
    add_limit(ls, 10000)
    add_json(ls)
    add_config(ls)
    ls.set_defaults(func=cmd_list)


def parse_since(value: str, now: dt.datetime | None = None) -> dt.datetime:
    """'7d', '24h', '30m', '2w' (before now) or an ISO date/time (UTC when naive)."""
    value = value.strip()
    match = _AGO.match(value.lower())
    if match:
        from gateway.clock import utcnow
        return (now or utcnow()) - dt.timedelta(**{_UNITS[match[2]]: int(match[1])})
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise CommandError(f"--since {value!r}: expected an ISO date such as 2025-01-31 "
                           "or an age such as 7d, 24h, 30m", 2) from None
    if when.tzinfo is not None:
        when = when.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return when


def cmd_list(args) -> int:
    from sqlalchemy import select

    from gateway.models import Audit, Patient
    since = parse_since(args.since) if args.since else None
    services = services_from(args)
    try:
        with services.factory() as session:
            q = (select(Audit, Patient.account_number)
                 .outerjoin(Patient, Audit.patient_id == Patient.id)
                 .order_by(Audit.at.desc(), Audit.id.desc()).limit(args.limit))
            if args.patient:
                patient_id = session.scalar(select(Patient.id).where(
                    Patient.account_number == args.patient.strip()))
                if patient_id is None:
                    raise CommandError(f"no patient with account {args.patient}")
                q = q.where(Audit.patient_id == patient_id)
            if since is not None:
                q = q.where(Audit.at >= since)
            if args.action:
                q = q.where(Audit.action.startswith(args.action.strip(), autoescape=True))
            rows = [{"id": a.id, "at": a.at, "actor": a.actor, "action": a.action,
                     "object_type": a.object_type, "object_id": a.object_id,
                     "account": account, "detail": a.detail or {}}
                    for a, account in session.execute(q)]
        tz = services.cfg.practice.timezone
    finally:
        services.close()
    rows.reverse()
    if not args.json:
        for row in rows:
            row["detail"] = " ".join(f"{k}={v}" for k, v in sorted(row["detail"].items()))
    output(args, rows, COLUMNS, tz=tz)
    return 0
