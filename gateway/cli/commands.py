"""serve, check-config, db upgrade, attachments list."""
from __future__ import annotations

import logging
import os
import sys

from gateway.cli.common import (CommandError, add_config, add_json, add_limit, config_from,
                                output, services_from)


def register(sub) -> None:
    p = sub.add_parser("serve", help="run every listener and worker",
                       description="Run the gateway: inbound SMTP (MX), submission SMTP, "
                       "HTTP (enrollment page, /healthz, /metrics), the outbox worker, the "
                       "deadline sweeper and IMAP pollers, in one process ([gateway] "
                       "workers = N: in N processes sharing the SMTP ports). Stop it with "
                       "SIGTERM or Ctrl-C: it drains within [gateway] drain_seconds. SIGHUP "
                       "reloads rules and templates.")
    add_config(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("check-config", help="validate config, rules and templates",
                       description="Validate the config file, the rules and the templates "
                       "(each rendered with sample data). Every problem is listed, each "
                       "naming its file and field; exit 1 when there is any.")
    add_config(p)
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("db", help="database schema",
                       description="Database schema migrations.")
    dsub = p.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    up = dsub.add_parser("upgrade", help="apply schema migrations",
                         description="Apply every pending schema migration (the embedded "
                         "SQLite default does this itself at start).")
    add_config(up)
    up.set_defaults(func=cmd_db_upgrade)

    p = sub.add_parser("attachments", help="the attachment log",
                       description="The log of attachments removed from patients' mail.")
    asub = p.add_subparsers(dest="att_command", metavar="ACTION", required=True)
    ls = asub.add_parser("list", help="removed attachments, newest first")
    add_config(ls)
    add_json(ls)
    add_limit(ls, 200)
    ls.set_defaults(func=cmd_attachments_list)


def cmd_serve(args) -> int:
    from gateway import logs
    os.umask(0o077)  # whatever started us: the database and Maildir files are 0600
    if config_from(args).gateway.workers > 1:
        return _serve_workers(args)
    services = services_from(args, load_rules=True)
    logs.setup(services.cfg.gateway.log_level)
    try:
        return _serve(services)
    finally:
        services.close()


def _serve(services, role=None) -> int:
    """One gateway process: the only one, or worker ROLE of several (gateway.workers)."""
    import asyncio

    from gateway.app import Gateway
    # Content work (parsing, HTML to text, rules) runs in worker threads; the event loop
    # gets the interpreter back within 1 ms instead of 5, so SMTP replies and /healthz stay
    # prompt while a costly message is analysed.
    sys.setswitchinterval(0.001)
    _freeze_loaded_objects()
    ports = {} if role is None else {"inbound_port": role.inbound_port,
                                     "submission_port": role.submission_port,
                                     "worker": role.index}
    try:
        asyncio.run(Gateway(services, **ports).run_forever())
    except OSError as e:
        raise CommandError(f"cannot listen: {e}") from None
    return 0


def _freeze_loaded_objects() -> None:
    """What start-up loaded (rules, model, templates: about 170,000 objects) lives as long
    as the process: move it out of the garbage collector's sight (`gc.freeze`), so a full
    collection no longer walks it and holds the interpreter for about 65 ms (a p99 spike
    for every session at that moment); 4 such collections in 400 messages, then 1 of 17 ms.
    Rules reloaded by SIGHUP are not frozen (collected as before)."""
    import gc
    gc.collect()
    gc.freeze()


def _serve_workers(args) -> int:
    """[gateway] workers > 1: this process forks the workers and watches them."""
    import shutil
    import tempfile
    # The workers' counters go to files here, so /metrics (on worker 0) sums them all; set
    # before the metrics module is imported (below, and never before in this process).
    metrics_dir = tempfile.mkdtemp(prefix="portal-gateway-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        return _supervise(services_from(args, load_rules=True))  # workers inherit the rules
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _supervise(services) -> int:
    import gateway.app  # noqa: F401  (imported once here, not in every worker)
    from gateway import logs
    from gateway.workers import Supervisor
    cfg = services.cfg
    services.close()  # no connection crosses a fork: each worker opens its own
    logs.setup(cfg.gateway.log_level, fields={"pid": os.getpid()})

    def run_worker(role) -> int:
        logs.setup(cfg.gateway.log_level, fields={"worker": role.index, "pid": os.getpid()})
        try:
            return _serve(services, role)
        except CommandError as e:
            print(f"portal-gateway: {e}", file=sys.stderr)
            return e.exit_code
        finally:
            services.close()

    def reload() -> None:
        try:
            services.reload()
        except Exception as e:  # each worker logs the refusal with its details
            logging.getLogger("gateway.workers").warning(
                "reload refused in the parent", extra={"error": type(e).__name__})

    try:
        return Supervisor(cfg, run_worker, reload).run()
    except OSError as e:
        raise CommandError(f"cannot listen: {e}") from None


def cmd_check_config(args) -> int:
    """Every problem at once: config fields, then rules and templates."""
    import sys

    from gateway.checks import check_all
    from gateway.config import ConfigError, load_config
    problems, cfg = [], None
    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        problems, cfg = list(e.problems), getattr(e, "config", None)
    if cfg is not None:
        problems += check_all(cfg)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"{len(problems)} problem{'s' if len(problems) > 1 else ''}", file=sys.stderr)
        return 2 if cfg is None or problems[0].startswith(str(cfg.path)) else 1
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
    from sqlalchemy import select

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
                        "size", "reason", "removed_at"], tz=services.cfg.practice.timezone)
    services.close()
    return 0
