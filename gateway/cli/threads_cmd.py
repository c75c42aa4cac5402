"""threads list | close: conversations and their reply deadlines."""
from __future__ import annotations

from gateway.cli.common import (CommandError, add_config, add_json, add_limit, output,
                                services_from)

COLUMNS = ["thread", "state", "due", "overdue", "category", "urgent", "team", "account"]


def register(sub) -> None:
    p = sub.add_parser("threads", help="conversation threads and their reply deadlines",
                       description="Conversation threads and their reply deadlines.")
    tsub = p.add_subparsers(dest="threads_command", metavar="ACTION", required=True)
    ls = tsub.add_parser("list", help="open threads: urgent ones first, then soonest due",
                         description="Open threads: urgent ones first, then soonest due; "
                         "times in the practice's zone.")
    ls.add_argument("--overdue", action="store_true", help="only open threads past due")
    ls.add_argument("--all", action="store_true",
                    help="every thread, whatever its state (answered, closed, ...)")
    add_json(ls)
    add_limit(ls, 1000)
    cl = tsub.add_parser("close", help="close a thread: its clock stops, no more reminders",
                         description="Close a thread: its clock stops, no more reminders "
                         "or escalations.")
    cl.add_argument("thread", metavar="THREAD",
                    help="the thread id (X-Portal-Thread header, THREAD column of list)")
    for q, fn in ((ls, cmd_list), (cl, cmd_close)):
        add_config(q)
        q.set_defaults(func=fn)


def cmd_list(args) -> int:
    from sqlalchemy import and_, case, select

    from gateway.clock import utcnow
    from gateway.models import Patient, Thread
    services = services_from(args)
    now = utcnow()
    urgent_open = case((and_(Thread.urgent.is_(True), Thread.state == "open"), 0), else_=1)
    q = (select(Thread, Patient.account_number).join(Patient, Thread.patient_id == Patient.id)
         .order_by(urgent_open, Thread.due_at.is_(None), Thread.due_at, Thread.id)
         .limit(args.limit))
    if args.overdue:
        q = q.where(Thread.state == "open", Thread.due_at < now)
    elif not args.all:
        q = q.where(Thread.state == "open")
    try:
        with services.factory() as session:
            rows = [{"thread": t.public_id, "state": t.state, "due": t.due_at,
                     "overdue": bool(t.state == "open" and t.due_at and t.due_at < now),
                     "category": t.category, "urgent": bool(t.urgent), "team": t.team,
                     "account": account, "created": t.created_at}
                    for t, account in session.execute(q)]
        tz = services.cfg.practice.timezone
    finally:
        services.close()
    output(args, rows, COLUMNS, tz=tz)
    return 0


def cmd_close(args) -> int:
    from sqlalchemy import select

    from gateway import audit
    from gateway.models import Thread
    services = services_from(args)
    try:
        with services.transaction() as session:
            thread = session.scalar(select(Thread).where(
                Thread.public_id == args.thread.strip().lower()))
            if thread is None:
                raise CommandError(f"no thread {args.thread}")
            if thread.state == "closed":
                print(f"thread {thread.public_id} is already closed")
                return 0
            previous, thread.state = thread.state, "closed"
            audit.record(session, "cli", "thread.closed", "thread", thread.public_id,
                         thread.patient_id, previous=previous)
    finally:
        services.close()
    print(f"thread {args.thread} closed; no more reminders or escalations")
    return 0
