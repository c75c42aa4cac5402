"""quarantine list, quarantine retry: messages that crashed the pipeline and were set aside."""
from __future__ import annotations

from gateway.cli.common import (CommandError, add_config, add_json, add_limit, output,
                                services_from, spinner)

COLUMNS = ["id", "state", "attempts", "error_type", "step", "source", "size",
           "first_at", "held_at"]


def register(sub) -> None:
    p = sub.add_parser("quarantine", help="messages set aside after crashing the pipeline")
    qsub = p.add_subparsers(dest="quarantine_command", metavar="ACTION", required=True)
    ls = qsub.add_parser("list", help="held messages, newest first (ids, error, no content)")
    add_json(ls)
    ls.add_argument("--all", action="store_true",
                    help="also messages still being retried, released and refused")
    add_limit(ls, 200)
    add_config(ls)
    ls.set_defaults(func=cmd_list)

    rt = qsub.add_parser("retry", help="run a held message through the pipeline again "
                         "(after the fix is deployed)")
    rt.add_argument("id", type=int, metavar="ID", help="the ID column of quarantine list")
    add_config(rt)
    rt.set_defaults(func=cmd_retry)


def cmd_list(args) -> int:
    from gateway import quarantine
    services = services_from(args)
    with services.factory() as session:
        rows = [{"id": r.id, "state": r.state, "attempts": r.attempts,
                 "error_type": r.error_type, "step": r.step, "source": r.source,
                 "size": r.size, "sha256": r.raw_sha256, "session": r.session_id,
                 "first_at": r.first_at, "last_at": r.last_at, "held_at": r.held_at,
                 "released_at": r.released_at}
                for r in quarantine.held(session, args.all, args.limit)]
    output(args, rows, COLUMNS, tz=services.cfg.practice.timezone)
    services.close()
    return 0


def cmd_retry(args) -> int:
    from gateway import quarantine
    services = services_from(args)
    try:
        with spinner(f"running message {args.id} through the pipeline"):
            outcome = quarantine.retry(services, args.id)
    except LookupError as e:
        raise CommandError(str(e)) from None
    except Exception as e:
        raise CommandError(f"message {args.id} failed again ({type(e).__name__}); "
                           "it stays held") from None
    print(f"quarantined message {args.id}: {outcome}")
    return 0
