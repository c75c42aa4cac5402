"""serve, check-config, db upgrade, attachments list."""
from __future__ import annotations

import asyncio
import os
import sys

from sqlalchemy import select

from gateway.cli.common import (CommandError, add_config, config_from, output,
                                services_from)


def register(sub) -> None:
    p = sub.add_parser("serve", help="run every listener and worker")
    add_config(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("check-config", help="validate config, rules and templates")
    add_config(p)
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("db", help="database schema")
    dsub = p.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    up = dsub.add_parser("upgrade", help="apply schema migrations")
    add_config(up)
    up.set_defaults(func=cmd_db_upgrade)

    p = sub.add_parser("attachments", help="the attachment log")
    asub = p.add_subparsers(dest="att_command", metavar="ACTION", required=True)
    ls = asub.add_parser("list", help="removed attachments, newest first")
    add_config(ls)
    ls.add_argument("--json", action="store_true", help="one JSON object per line")
    ls.add_argument("--limit", type=int, default=200)
    ls.set_defaults(func=cmd_attachments_list)


def cmd_serve(args) -> int:
    from gateway import logs
    from gateway.app import Gateway
    os.umask(0o077)  # whatever started us: the database and Maildir files are 0600
    services = services_from(args)
    logs.setup(services.cfg.gateway.log_level)
    # Content work (parsing, HTML to text, rules) runs in worker threads; the event loop
    # gets the interpreter back within 1 ms instead of 5, so SMTP replies and /healthz stay
    # prompt while a costly message is analysed.
    sys.setswitchinterval(0.001)
    try:
        asyncio.run(Gateway(services).run_forever())
    except OSError as e:
        raise CommandError(f"cannot listen: {e}") from None
    finally:
        services.close()
    return 0


def cmd_check_config(args) -> int:
    from gateway.checks import check_all
    cfg = config_from(args)
    problems = check_all(cfg)
    for problem in problems:
        print(problem)
    if problems:
        return 1
    print(f"{cfg.path}: OK")
    return 0


def cmd_db_upgrade(args) -> int:
    from gateway import db
    cfg = config_from(args)
    engine = db.make_engine(cfg.database_url)
    try:
        db.upgrade(engine)
        print(f"database at revision {db.current_revision(engine)}")
    finally:
        engine.dispose()
    return 0


def cmd_attachments_list(args) -> int:
    from gateway.models import Attachment, Message, Thread
    services = services_from(args)
    with services.factory() as session:
        q = (select(Attachment, Thread.public_id).join(Message, Attachment.message_id == Message.id)
             .outerjoin(Thread, Message.thread_id == Thread.id)
             .order_by(Attachment.id.desc()).limit(args.limit))
        rows = [{"id": a.id, "message_id": a.message_id, "thread": tid, "filename": a.filename,
                 "declared_type": a.declared_type, "sniffed_type": a.sniffed_type,
                 "size": a.size, "sha256": a.sha256, "reason": a.reason,
                 "removed_at": a.created_at} for a, tid in session.execute(q)]
    output(args, rows, ["id", "message_id", "filename", "declared_type", "sniffed_type",
                        "size", "reason", "removed_at"])
    services.close()
    return 0
