"""outbox list, notify, hash-password."""
from __future__ import annotations

import sys

from gateway.cli.common import (CommandError, add_config, add_json, add_limit, output,
                                services_from)


def register(sub) -> None:
    p = sub.add_parser("outbox", help="the outbound queue",
                       description="The outbound queue: every mail the gateway sends.")
    osub = p.add_subparsers(dest="outbox_command", metavar="ACTION", required=True)
    ls = osub.add_parser("list", help="queued, sent and failed mail, newest first",
                         description="Queued, sent and failed mail, newest first: state, "
                         "attempts, next try (practice's zone), last error.")
    add_json(ls)
    ls.add_argument("--state", choices=("queued", "sent", "failed"),
                    help="only mail in this state")
    add_limit(ls, 200)
    add_config(ls)
    ls.set_defaults(func=cmd_outbox_list)

    p = sub.add_parser("notify", help="send a portal notification of KIND to a patient",
                       description="Queue a portal notification of a transactional KIND to "
                       "an active patient, from the kind's template.")
    p.add_argument("account", metavar="ACCOUNT", help="the patient's account number")
    p.add_argument("--kind", required=True, help="one of [notifications] kinds in config")
    add_config(p)
    p.set_defaults(func=cmd_notify)

    p = sub.add_parser("hash-password", help="print an argon2 hash for "
                       "[smtp] submission_users (reads the password from stdin or a prompt)",
                       description="Read a password (a prompt on a terminal, else one line "
                       "of stdin) and print its argon2 hash for [smtp] submission_users. "
                       "It reads no config; --config is accepted like everywhere.")
    add_config(p)
    p.set_defaults(func=cmd_hash_password)


def cmd_outbox_list(args) -> int:
    from sqlalchemy import select

    from gateway.models import Outbox
    services = services_from(args)
    with services.factory() as session:
        q = select(Outbox).order_by(Outbox.id.desc()).limit(args.limit)
        if args.state:
            q = q.where(Outbox.state == args.state)
        rows = [{"id": r.id, "kind": r.kind, "recipient": r.recipient, "state": r.state,
                 "attempts": r.attempts, "next_attempt_at": r.next_attempt_at
                 if r.state == "queued" else None, "created_at": r.created_at,
                 "sent_at": r.sent_at, "last_error": r.last_error}
                for r in session.scalars(q)]
    output(args, rows, ["id", "kind", "recipient", "state", "attempts", "next_attempt_at",
                        "last_error"], tz=services.cfg.practice.timezone)
    services.close()
    return 0


def cmd_notify(args) -> int:
    from gateway import notifications, patients
    services = services_from(args)
    kind = args.kind.strip().lower()
    if not notifications.is_transactional(services.cfg, kind):
        raise CommandError(f"kind {kind!r} is not a transactional notification kind in "
                           f"config ([notifications] kinds: "
                           f"{', '.join(services.cfg.notifications.kinds)})")
    with services.transaction() as session:
        patient = patients.by_account(session, args.account)
        if patient is None:
            raise CommandError(f"no patient with account {args.account}")
        if not patients.is_admissible(patient, services.cfg.policy.allowed_states):
            raise CommandError(f"patient {args.account} is {patient.status}"
                               f"{' (undeliverable)' if patient.undeliverable else ''}; "
                               "notifications go only to active patients")
        msg = notifications.from_template(services, patient, kind)
        outbox_id = notifications.prepare(services, session, patient, msg, kind, "cli")
    print(f"notification queued (outbox {outbox_id})")
    return 0


def cmd_hash_password(args) -> int:
    import getpass

    from argon2 import PasswordHasher
    secret = (getpass.getpass("password: ") if sys.stdin.isatty()
              else sys.stdin.readline().rstrip("\n"))
    if len(secret) < 12:
        raise CommandError("use at least 12 characters")
    print(PasswordHasher().hash(secret))
    return 0
