"""purge: retention of message text (``[gateway] retention_days``)."""
from __future__ import annotations

import argparse
import contextlib

from gateway.cli.common import (Progress, add_config, human_cell, print_json_lines,
                                services_from)

EXAMPLES = """examples:
  portal-gateway purge --dry-run          # what would go, nothing changes
  portal-gateway purge                    # remove it (run daily from a timer)
  portal-gateway purge --json             # counts as one JSON object
"""


def register(sub) -> None:
    p = sub.add_parser("purge", help="remove message text, file names and raw mail of threads "
                       "that ended (and of mail without a thread) more than "
                       "[gateway] retention_days ago (metadata and audit stay)",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dry-run", action="store_true", help="count only, change nothing")
    p.add_argument("--json", action="store_true", help="print the counts as one JSON object")
    add_config(p)
    p.set_defaults(func=cmd_purge)


def _expire_quarantine(services) -> int:
    """Held messages past ``[gateway] quarantine_days`` lose their raw bytes."""
    from gateway import quarantine
    with services.transaction() as session:
        return quarantine.expire(session, services.cfg.gateway.quarantine_days)


def cmd_purge(args) -> int:
    from gateway import retention
    services = services_from(args)
    days = services.cfg.gateway.retention_days
    bar = Progress("purging" if not args.dry_run else "counting") if not args.json else None
    try:
        with bar or contextlib.nullcontext():
            report = retention.purge(services, dry_run=args.dry_run, actor="cli",
                                     progress=lambda r: bar and bar(r.threads))
        expired = 0 if args.dry_run else _expire_quarantine(services)
    finally:
        services.close()
    row = {"dry_run": bool(args.dry_run), "retention_days": days, **report.as_dict(),
           "quarantine_expired": expired}
    if args.json:
        print_json_lines([row])
        return 0
    if not days:
        print("retention_days = 0: nothing is ever purged")
        return 0
    verb = "would purge" if args.dry_run else "purged"
    cutoff = human_cell(report.cutoff, services.cfg.practice.timezone)
    print(f"{verb}: {report.messages} messages and {report.outbox} sent mails in "
          f"{report.threads} threads that ended before {cutoff} (retention {days} days); "
          f"{report.attachment_names} attachment file names; "
          + ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in report.loose.items()))
    return 0
