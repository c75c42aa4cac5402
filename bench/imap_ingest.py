"""Messages per second from a real Dovecot through `ingest` to the outbox.

Starts a throwaway Dovecot (as the tests do), appends N patient messages to its INBOX,
then times one IMAP poller draining them: fetch, RCPT checks, the full patient chain
(strip, classify, thread, store, staff copy and acknowledgement into the outbox, one
transaction each) and the move to the done folder.  Prints the figures.

Usage:  .venv/bin/python bench/imap_ingest.py [-n 500] [--pg URL] [--pollers 1]
(default database: a SQLite file with synchronous=FULL in a temporary directory; with
--pg, a throwaway schema in that PostgreSQL database, dropped afterwards).
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import pathlib
import secrets
import shutil
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, func, select, text  # noqa: E402

from gateway.config import load_config  # noqa: E402
from gateway.imap import ImapPoller  # noqa: E402
from gateway.models import Outbox  # noqa: E402
from gateway.services import Services  # noqa: E402
from tests.conftest import migrate, write_config  # noqa: E402
from tests.dovecot import Dovecot, Mailbox, account_toml  # noqa: E402
from tests.helpers import add_patient, patient_mail  # noqa: E402

BODY = ("Hello, I would like to move my appointment on Tuesday to later in the week if "
        "possible. Thursday afternoon would work best for me.\n\nThanks,\nAna\n") * 4


def messages(n: int) -> list[bytes]:
    out = []
    for i in range(n):
        msg = patient_mail(subject=f"Appointment {i}", body=BODY)
        msg["Return-Path"] = "<ana@example.com>"
        msg["Delivered-To"] = "portal@portal.example.org"
        out.append(msg.as_bytes())
    return out


async def drain(services, box: Mailbox, n: int, pollers: int) -> float:
    acct = services.cfg.imap.accounts[0]
    runners = [ImapPoller(services, acct, name=f"bench-{i}") for i in range(pollers)]
    start = time.perf_counter()
    tasks = [asyncio.create_task(p.run()) for p in runners]
    try:
        while True:
            with services.factory() as session:
                rows = session.scalar(select(func.count()).select_from(Outbox))
            if rows >= 2 * n and box.count("INBOX") == 0:
                return time.perf_counter() - start
            await asyncio.sleep(0.05)
    finally:
        for p in runners:
            p.stop()
        await asyncio.gather(*tasks)


@contextlib.contextmanager
def database(pg: str, tmp: pathlib.Path):
    if not pg:
        yield f"sqlite:///{tmp / 'gateway.sqlite3'}"
        return
    schema = "bench_" + secrets.token_hex(4)
    admin = create_engine("postgresql+psycopg://" + pg.split("://", 1)[1])
    with admin.begin() as conn:
        conn.execute(text(f"create schema {schema}"))
    try:
        yield f"{pg}{'&' if '?' in pg else '?'}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"drop schema {schema} cascade"))
        admin.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=500, help="messages (default 500)")
    ap.add_argument("--pg", default="", help="PostgreSQL URL (default: temporary SQLite)")
    ap.add_argument("--pollers", type=int, default=1)
    args = ap.parse_args()
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="portal-bench-"))
    server = Dovecot()
    server.start()
    try:
        with database(args.pg, tmp) as url:
            run(args, server, tmp, url)
    finally:
        server.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


def run(args, server: Dovecot, tmp: pathlib.Path, url: str) -> None:
    migrate(url)
    path = write_config(tmp, url)
    path.write_text(path.read_text() + account_toml(server, idle_seconds=300.0))
    services = Services.create(load_config(path))
    add_patient(services)
    box = Mailbox(server)
    raws = messages(args.n)
    t0 = time.perf_counter()
    for raw in raws:
        box.append("INBOX", raw)
    appended = time.perf_counter() - t0
    elapsed = asyncio.run(drain(services, box, args.n, args.pollers))
    print(f"database:        {services.engine.dialect.name}")
    print(f"messages:        {args.n} ({len(raws[0])} bytes each), pollers: {args.pollers}")
    print(f"append (setup):  {args.n / appended:.0f} msg/s")
    print(f"IMAP -> ingest -> outbox -> moved: {elapsed:.2f} s, "
          f"{args.n / elapsed:.1f} msg/s, {1000 * elapsed / args.n:.1f} ms/msg")
    box.close()
    services.close()


if __name__ == "__main__":
    main()
