"""How long a deadline sweep takes when many threads exist but few are due.

Seeds a fresh database with:
  * --threads open threads that are not due for days (default 200,000),
  * --backlog open threads long overdue whose notices were all sent before (default
    100,000: staff never answered them; they must not make every sweep slower),
  * --due threads whose reminder or escalation fell due since the previous sweep (default 60),
then times the sweep (steady state: a previous sweep's mark exists), a second sweep (nothing
left to do), and a first-ever sweep over the same data (no mark: the one-time catch-up that
also looks at the whole overdue backlog).  Prints the query plan of the candidate query.

Usage:  .venv/bin/python bench/deadline_sweep.py [--threads N] [--backlog N] [--due N]
                                                 [--db-url postgresql://...]
(SQLite in a temporary folder unless --db-url; a PostgreSQL database must be empty or
disposable: the bench creates its tables there with `db upgrade`.)
"""
from __future__ import annotations

import argparse
import datetime as dt
import pathlib
import random
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import delete, func, insert, select, text  # noqa: E402

from gateway.addresses import new_token  # noqa: E402
from gateway.config import build_config  # noqa: E402
from gateway.deadlines import MARK, DeadlineSweeper, stages  # noqa: E402
from gateway.models import Outbox, Patient, SweepMark, Thread, ThreadNotice  # noqa: E402
from gateway.services import Services  # noqa: E402

NOW = dt.datetime(2030, 6, 3, 15, 0, 0)
CHUNK = 20_000
TEAM = "frontdesk@practice.example.org"


def services_for(url: str, data_dir: str) -> Services:
    from gateway import db
    cfg = build_config({"gateway": {"data_dir": data_dir, "templates_dir": str(ROOT / "templates"),
                                    "rules_dir": str(ROOT / "rules")},
                        "database": {"url": url}}, ROOT / "bench.toml")
    if not url.startswith("sqlite"):
        engine = db.make_engine(url)
        db.upgrade(engine)
        engine.dispose()
    return Services.create(cfg)


def _rows(n: int, patient_id: int, due_of) -> list[dict]:
    return [{"public_id": new_token(), "patient_id": patient_id, "category": "appointment",
             "urgent": False, "team": TEAM, "state": "open", "due_at": due_of(i),
             "created_at": NOW - dt.timedelta(days=3)} for i in range(n)]


def _insert(conn, rows: list[dict]) -> None:
    for start in range(0, len(rows), CHUNK):
        conn.execute(insert(Thread), rows[start:start + CHUNK])


def seed(s: Services, n_future: int, n_backlog: int, n_due: int) -> None:
    rnd = random.Random(6)
    with s.engine.begin() as conn:
        pid = conn.execute(insert(Patient).values(
            account_number="1001", first_name="Ana", last_name="Lopez",
            email="ana@example.com", state="CA", status="active")).inserted_primary_key[0]
        _insert(conn, _rows(n_future, pid, lambda i: NOW + dt.timedelta(
            hours=25 + rnd.random() * 24 * 9)))
        _insert(conn, _rows(n_backlog, pid, lambda i: NOW - dt.timedelta(
            hours=1 + rnd.random() * 24 * 60)))
        offsets = [st.offset for st in stages(s.cfg)]  # escalation and each reminder
        _insert(conn, _rows(n_due, pid, lambda i: NOW + offsets[i % len(offsets)]
                            - dt.timedelta(seconds=30 + i)))
        backlog = conn.execute(select(Thread.id, Thread.due_at).where(
            Thread.due_at < NOW - dt.timedelta(minutes=59))).all()
        notices = [{"thread_id": tid, "kind": st.kind, "offset_minutes": st.offset_minutes,
                    "due_at": due, "skipped": False} for tid, due in backlog
                   for st in stages(s.cfg)]
        for start in range(0, len(notices), CHUNK):
            conn.execute(insert(ThreadNotice), notices[start:start + CHUNK])
        conn.execute(insert(SweepMark).values(name=MARK,
                                               swept_until=NOW - dt.timedelta(minutes=1)))


def timed_sweep(s: Services) -> tuple[int, float]:
    sweeper = DeadlineSweeper(s, clock=lambda: NOW)
    started = time.perf_counter()
    sent = sweeper.sweep_once()
    return sent, (time.perf_counter() - started) * 1000


def plan(s: Services) -> str:
    sweeper = DeadlineSweeper(s, clock=lambda: NOW)
    q = sweeper._candidates_query(stages(s.cfg)[-1], NOW - dt.timedelta(hours=1), NOW)
    with s.engine.connect() as conn:
        sql = str(q.compile(conn, compile_kwargs={"literal_binds": True}))
        prefix = "EXPLAIN QUERY PLAN " if s.engine.dialect.name == "sqlite" else "EXPLAIN "
        return "\n".join("    " + " ".join(str(c) for c in row)
                         for row in conn.execute(text(prefix + sql)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=200_000, help="open threads not yet due")
    ap.add_argument("--backlog", type=int, default=100_000,
                    help="open overdue threads already escalated")
    ap.add_argument("--due", type=int, default=60, help="threads with a notice due now")
    ap.add_argument("--db-url", default="", help="PostgreSQL URL (default: SQLite, temporary)")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="sweep-bench-")
    url = args.db_url or f"sqlite:///{tmp}/bench.sqlite3"
    s = services_for(url, tmp)
    started = time.perf_counter()
    seed(s, args.threads, args.backlog, args.due)
    with s.engine.connect() as conn:
        if s.engine.dialect.name == "postgresql":
            conn.execute(text("ANALYZE"))
        total = conn.execute(select(func.count()).select_from(Thread)).scalar()
    print(f"database: {s.engine.dialect.name}; {total:,} open threads "
          f"({args.threads:,} not due, {args.backlog:,} overdue and already escalated, "
          f"{args.due} with a notice due now); seeded in {time.perf_counter() - started:.1f} s")
    print("candidate query plan (one stage):\n" + plan(s))
    sent, ms = timed_sweep(s)
    print(f"sweep (steady state):        {ms:8.1f} ms, {sent} notices queued")
    sent2, ms2 = timed_sweep(s)
    print(f"sweep again (nothing due):   {ms2:8.1f} ms, {sent2} notices queued")
    with s.transaction() as session:  # the same data, as if no sweep had ever run
        session.execute(delete(SweepMark))
        session.execute(delete(ThreadNotice).where(ThreadNotice.thread_id.in_(
            select(Outbox.thread_id).where(Outbox.thread_id.is_not(None)))))
        session.execute(delete(Outbox))
    sent3, ms3 = timed_sweep(s)
    print(f"first sweep ever (catch-up): {ms3:8.1f} ms, {sent3} notices queued "
          "(looks at the whole overdue backlog once)")
    s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
