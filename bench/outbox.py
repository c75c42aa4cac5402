"""Outbox throughput: mails per second from the outbox to a local SMTP relay (a stock
aiosmtpd Sink in its own process), with one and with two workers, on SQLite and (when it
answers) PostgreSQL.

    .venv/bin/python bench/outbox.py [--mails N] [--pg postgresql://postgres@127.0.0.1/test]
"""
from __future__ import annotations

import argparse
import asyncio
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path

from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gateway import db, outbox  # noqa: E402
from gateway.config import build_config  # noqa: E402
from gateway.crypto import write_key_file  # noqa: E402
from gateway.delivery.worker import OutboxWorker  # noqa: E402
from gateway.services import Services  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def services_for(url: str, tmp: Path, port: int) -> Services:
    key = tmp / "bench.key"  # every instance of one run shares it
    if not key.exists():
        write_key_file(key)
    cfg = build_config({"gateway": {"data_dir": str(tmp), "rules_dir": str(ROOT / "rules"),
                                    "templates_dir": str(ROOT / "templates")},
                        "security": {"key_file": str(key)},
                        "database": {"url": url},
                        "delivery": {"mode": "relay", "relay_port": port,
                                     "relay_tls": "none"}}, tmp / "config.toml")
    return Services.create(cfg, migrate=False)


def seed(services: Services, n: int) -> None:
    with services.transaction() as session:
        for i in range(n):
            msg = EmailMessage()
            msg["From"], msg["To"] = "portal@portal.example.org", f"p{i}@example.com"
            msg["Subject"] = "Something is waiting in the portal"
            msg.set_content("A new message is waiting for you in the patient portal.\n" * 20)
            outbox.enqueue(session, services.addresses, msg, f"p{i}@example.com", "bench")


async def drain(workers: list[OutboxWorker]) -> None:
    async def one(w):
        while await w.deliver_batch():
            pass
    await asyncio.gather(*(one(w) for w in workers))
    for w in workers:
        await w.backend.close()


def measure(url: str, tmp: Path, port: int, n: int, nworkers: int) -> float:
    engine = db.make_engine(url)
    db.upgrade(engine)
    engine.dispose()
    services = [services_for(url, tmp, port) for _ in range(nworkers)]
    seed(services[0], n)
    start = time.perf_counter()
    asyncio.run(drain([OutboxWorker(s, batch=50) for s in services]))
    elapsed = time.perf_counter() - start
    for s in services:
        s.close()
    return n / elapsed


def pg_schema(base: str):
    schema = "bench_" + secrets.token_hex(4)
    admin = create_engine("postgresql+psycopg://" + base.split("://", 1)[1])
    with admin.begin() as conn:
        conn.execute(text(f"create schema {schema}"))
    return admin, schema, f"{base}?options=-csearch_path%3D{schema}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mails", type=int, default=1000)
    ap.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    args = ap.parse_args()
    port = free_port()
    sink = subprocess.Popen([sys.executable, "-m", "aiosmtpd", "-n", "-l",
                             f"127.0.0.1:{port}", "-c", "aiosmtpd.handlers.Sink"])
    time.sleep(1.0)
    print(f"{'database':>10} {'workers':>7} {'mails':>6} {'mails/s':>8}")
    try:
        for nworkers in (1, 2):
            with tempfile.TemporaryDirectory() as d:
                url = f"sqlite:///{d}/bench.sqlite3"
                rate = measure(url, Path(d), port, args.mails, nworkers)
                print(f"{'sqlite':>10} {nworkers:>7} {args.mails:>6} {rate:>8.1f}")
            try:
                admin, schema, url = pg_schema(args.pg)
            except Exception as e:
                print(f"{'postgresql':>10} skipped: {type(e).__name__}")
                continue
            with tempfile.TemporaryDirectory() as d:
                rate = measure(url, Path(d), port, args.mails, nworkers)
                print(f"{'postgresql':>10} {nworkers:>7} {args.mails:>6} {rate:>8.1f}")
            with admin.begin() as conn:
                conn.execute(text(f"drop schema {schema} cascade"))
            admin.dispose()
    finally:
        sink.terminate()
        sink.wait(10)


if __name__ == "__main__":
    main()
