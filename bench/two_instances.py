"""Several gateway processes on one PostgreSQL database: end-to-end throughput (client ->
250 -> staff copy in the Maildir) of 2 KB messages over 10 SMTP sessions, in one run:

  one       one `serve` process (workers = 1), all 10 sessions to it
  two       two `serve` processes (workers = 1 each, own ports, same database and Maildir),
            5 sessions to each
  workers2  one `serve` with [gateway] workers = 2 (two processes on one port), 10 sessions

Cases interleave, three repetitions each; min/median/max and the ratio to `one`.  At the end
it checks that nothing was lost or doubled over the whole run: messages stored = messages
answered 250, two outbox rows each (acknowledgement and staff copy), every row sent, one
Maildir file per row, and one `mail.sent` audit row per outbox row (Maildir delivery is
idempotent by row, so the audit count is what shows a row sent twice).

    .venv/bin/python bench/two_instances.py [--messages N] [--reps 3] [--sqlite]

With --sqlite: the embedded SQLite database, `one` and `workers2` only.  Otherwise it needs
PostgreSQL (PORTAL_BENCH_PG_URL, default postgresql://postgres@127.0.0.1:5432/test);
it works in a schema of its own and drops it at the end.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, func, select, text  # noqa: E402

from inbound import CLI, ROOT, SESSIONS, client, free_port, wait_port  # noqa: E402

from gateway.config import load_config  # noqa: E402
from gateway.crypto import write_key_file  # noqa: E402
from gateway.db import make_engine, upgrade  # noqa: E402
from gateway.models import Audit, Message, Outbox  # noqa: E402
from gateway.services import Services  # noqa: E402
from tests.helpers import add_patient  # noqa: E402

PG_URL = os.environ.get("PORTAL_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
STAFF = "frontdesk@practice.example.org"  # where the bench messages' staff copies go


def write_config(folder: Path, name: str, db_url: str, workers: int = 1) -> tuple[Path, int]:
    port = free_port()
    text_ = (ROOT / "config.example.toml").read_text()
    for old, new in (("inbound_port = 2525", f"inbound_port = {port}"),
                     ("submission_port = 2587", f"submission_port = {free_port()}"),
                     ("port = 8025", f"port = {free_port()}"),
                     ("ops_port = 8026", f"ops_port = {free_port()}"),
                     ('rules_dir = "rules"', f'rules_dir = "{ROOT}/rules"'),
                     ('templates_dir = "templates"', f'templates_dir = "{ROOT}/templates"'),
                     ("poll_seconds = 1.0", "poll_seconds = 0.2"),
                     ("workers = 1 ", f"workers = {workers} "),
                     ('url = ""', f'url = "{db_url}"'),
                     ("max_messages_per_patient_per_hour = 20",
                      "max_messages_per_patient_per_hour = 0")):  # a benchmark, not abuse
        assert old in text_, old
        text_ = text_.replace(old, new, 1)
    path = folder / name
    path.write_text(text_)
    return path, port


class Server:
    def __init__(self, config: Path, port: int):
        log = open(os.environ.get("BENCH_SERVER_LOG", os.devnull), "a")
        self.proc = subprocess.Popen([CLI, "--config", str(config), "serve"],
                                     stdout=log, stderr=log)
        self.port = port
        wait_port(port, timeout=120)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        if self.proc.wait(120) != 0:
            raise SystemExit(f"serve exited {self.proc.returncode}")


def staff_copies(maildir: Path) -> int:
    new = maildir / STAFF / "new"
    return len(os.listdir(new)) if new.exists() else 0


async def drive(ports: list[int], total: int, maildir: Path) -> float:
    """TOTAL messages over SESSIONS sessions spread over PORTS; msg/s until the last staff
    copy is in the Maildir (each message has a new Message-ID: none is a resend)."""
    before = staff_copies(maildir)
    per = total // SESSIONS
    start = time.perf_counter()
    await asyncio.gather(*(client(ports[i % len(ports)], f"p{i}@example.com", per, 2_000)
                           for i in range(SESSIONS)))
    while staff_copies(maildir) < before + per * SESSIONS:
        await asyncio.sleep(0.02)
    return per * SESSIONS / (time.perf_counter() - start)


def check(config: Path, maildir: Path, answered: int) -> list[str]:
    """Lost or doubled anything over the whole run?  Returns the problems."""
    services = Services.create(load_config(config), migrate=False)
    with services.factory() as s:
        stored = s.scalar(select(func.count()).select_from(Message)
                          .where(Message.direction == "patient"))
        distinct = s.scalar(select(func.count(func.distinct(Message.message_id)))
                            .where(Message.direction == "patient"))
        states = Counter(s.scalars(select(Outbox.state)))
        sent = Counter(s.scalars(select(Audit.object_id).where(Audit.action == "mail.sent")))
    services.close()
    files = sum(len(os.listdir(d / "new")) for d in maildir.iterdir() if (d / "new").exists())
    rows = sum(states.values())
    print(f"answered 250: {answered}  stored: {stored} ({distinct} distinct Message-IDs)  "
          f"outbox rows: {rows} {dict(states)}  Maildir files: {files}  "
          f"mail.sent audit rows: {sum(sent.values())} (max per row {max(sent.values())})")
    problems = []
    if not stored == distinct == answered:
        problems.append("stored messages differ from those answered 250")
    if rows != 2 * answered or states.get("sent") != rows:
        problems.append("outbox rows missing or unsent")
    if files != rows or len(sent) != rows or max(sent.values()) != 1:
        problems.append("a mail was lost or sent twice")
    return problems


def run(folder: Path, db_url: str, total: int, reps: int) -> None:
    (folder / "portal-gateway.key").parent.mkdir(parents=True, exist_ok=True)
    write_key_file(folder / "portal-gateway.key")  # PostgreSQL: the key is given, shared
    config_a, port_a = write_config(folder, "a.toml", db_url)
    config_b, port_b = write_config(folder, "b.toml", db_url)
    config_w, port_w = write_config(folder, "w.toml", db_url, workers=2)
    services = Services.create(load_config(config_a))
    for i in range(SESSIONS):
        add_patient(services, account=str(1000 + i), email=f"p{i}@example.com")
    services.close()
    maildir = folder / "var" / "maildir"
    results: dict[str, list[float]] = {"one": [], "two": [], "workers2": []}
    answered = 0

    def case(name: str, ports: list[int], fresh: list[int]) -> None:
        nonlocal answered
        if fresh:  # one message a session first: a new process's first mail costs more
            asyncio.run(drive(fresh, SESSIONS, maildir))
            answered += SESSIONS
        results[name].append(asyncio.run(drive(ports, total, maildir)))
        answered += total

    sqlite = db_url.startswith("sqlite")
    for rep in range(reps):
        a = Server(config_a, port_a)
        case("one", [port_a], [port_a])
        if not sqlite:  # SQLite is for one gateway on one host (its workers included)
            b = Server(config_b, port_b)
            case("two", [port_a, port_b], [port_b])
            b.stop()
        a.stop()
        w = Server(config_w, port_w)
        case("workers2", [port_w], [port_w])
        w.stop()
        print(f"rep {rep + 1}: " + "  ".join(f"{k} {v[-1]:.1f} msg/s"
                                            for k, v in results.items() if v), flush=True)
    base = statistics.median(results["one"])
    print(f"\n{'case':>9} {'min':>7} {'median':>7} {'max':>7}  ratio to one (median)")
    for name, values in results.items():
        if not values:
            continue
        print(f"{name:>9} {min(values):>7.1f} {statistics.median(values):>7.1f} "
              f"{max(values):>7.1f}  {statistics.median(values) / base:.2f}")
    problems = check(config_a, maildir, answered)
    print("nothing lost or doubled" if not problems else "PROBLEMS: " + "; ".join(problems))
    if problems:
        raise SystemExit(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=200, help="2 KB messages per case")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--sqlite", action="store_true",
                    help="the embedded SQLite instead: one serve vs workers = 2 only")
    args = ap.parse_args()
    if args.sqlite:
        with tempfile.TemporaryDirectory() as d:
            run(Path(d), f"sqlite:///{d}/var/gateway.sqlite3", args.messages, args.reps)
        return
    schema = "bench_" + secrets.token_hex(4)
    admin = create_engine("postgresql+psycopg://" + PG_URL.split("://", 1)[1])
    with admin.begin() as conn:
        conn.execute(text(f"create schema {schema}"))
    sep = "&" if "?" in PG_URL else "?"
    db_url = f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    try:
        engine = make_engine(db_url)
        upgrade(engine)
        engine.dispose()
        with tempfile.TemporaryDirectory() as d:
            run(Path(d), db_url, args.messages, args.reps)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"drop schema {schema} cascade"))
        admin.dispose()


if __name__ == "__main__":
    main()
