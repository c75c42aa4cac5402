"""Soak under kill -9: once 250 is said, a message is delivered once, whatever happens.

Runs ``portal-gateway serve`` as a separate process (config from config.example.toml with
free ports; SQLite by default, PostgreSQL with --db), imports and activates a few
patients through the CLI, and sends N messages from concurrent SMTP clients while a killer
thread SIGKILLs the server at random moments and restarts it.  Clients resend (the very same
bytes) whatever got no 250; a 250 lost on the wire is answered 250 again without storing
twice (gateway/steps/dedupe.py).  Afterwards the restarted server drains the outbox, and
every message that got 250 must have exactly one staff copy (it carries the message's
marker) and one acknowledgement (In-Reply-To = the message's Message-ID) in the Maildir.

    .venv/bin/python bench/soak.py [--messages 2000] [--kills 20] [--db postgresql://...]

Prints sent, acknowledged (250), refused (5xx), lost, doubled, kills, retries; exit status
0 only when nothing was lost or doubled and the outbox is empty.
"""
from __future__ import annotations

import argparse
import json
import random
import re
import secrets
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).parent / "portal-gateway")
PORTAL = "portal@portal.example.org"
BODY = ("Hello, can I move my appointment to next week? Tuesday or Wednesday morning "
        "would suit me best.\n\nReference {marker}\n")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def set_key(text: str, key: str, value: str) -> str:
    new, n = re.subn(rf'(?m)^{key} = ("[^"]*"|\S+)', f"{key} = {value}", text, count=1)
    if n != 1:
        raise SystemExit(f"config.example.toml has no key {key}")
    return new


class Server:
    """`portal-gateway serve` as a child process that can be killed and restarted."""

    def __init__(self, config: Path, port: int, log: Path):
        self.config, self.port, self.log = config, port, log
        self.proc: subprocess.Popen | None = None
        self.lock = threading.Lock()

    def start(self) -> None:
        with self.lock, open(self.log, "ab") as out:
            self.proc = subprocess.Popen([CLI, "--config", str(self.config), "serve"],
                                         cwd=self.config.parent, stdout=out, stderr=out)

    def kill(self) -> None:
        with self.lock:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit(f"serve did not listen on {self.port}; see {self.log}")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)


def cli(config: Path, *args: str) -> str:
    proc = subprocess.run([CLI, "--config", str(config), *args], capture_output=True,
                          text=True, timeout=120)
    if proc.returncode != 0:
        raise SystemExit(f"portal-gateway {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout


def pg_schema(url: str) -> tuple[str, callable]:
    """A fresh schema for this run: (url using it, cleanup)."""
    from sqlalchemy import create_engine, text
    engine = create_engine("postgresql+psycopg://" + url.split("://", 1)[1])
    schema = "soak_" + secrets.token_hex(5)
    with engine.begin() as conn:
        conn.execute(text(f"create schema {schema}"))

    def drop() -> None:
        with engine.begin() as conn:
            conn.execute(text(f"drop schema {schema} cascade"))
        engine.dispose()
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{schema}", drop


def write_config(work: Path, db: str, lease: float) -> tuple[Path, int]:
    port = free_port()
    text = (ROOT / "config.example.toml").read_text()
    for key, value in {
        "inbound_port": str(port), "submission_port": str(free_port()),
        "port": str(free_port()), "ops_port": str(free_port()), "rules_dir": f'"{ROOT / "rules"}"',
        "templates_dir": f'"{ROOT / "templates"}"', "url": json.dumps(db),
        "poll_seconds": "0.1", "lease_seconds": str(lease),
        "max_messages_per_patient_per_hour": "0", "max_sessions_per_ip": "100",
    }.items():
        text = set_key(text, key, value)
    config = work / "config.toml"
    config.write_text(text)
    if not (work / "portal-gateway.key").exists():  # PostgreSQL: every instance, one key
        from gateway.crypto import write_key_file
        write_key_file(work / "portal-gateway.key")
    return config, port


def setup_patients(config: Path, work: Path, count: int) -> list[str]:
    emails = [f"soak{j}@example.com" for j in range(count)]
    roster = work / "roster.csv"
    roster.write_text("account_number,first_name,last_name,email,state\n" + "".join(
        f"{5000 + j},Soak{j},Tester,{e},CA\n" for j, e in enumerate(emails)))
    cli(config, "patients", "import", str(roster))
    for j in range(count):
        cli(config, "patients", "activate", str(5000 + j))
    return emails


def make_messages(n: int, emails: list[str], run: str) -> list[dict]:
    out = []
    for i in range(n):
        marker = f"SOAK{run}N{i:06d}Z"
        msg = EmailMessage()
        msg["From"], msg["To"] = emails[i % len(emails)], PORTAL
        msg["Subject"] = f"Appointment {marker}"
        msg["Message-ID"] = make_msgid(idstring=marker, domain="example.com")
        msg.set_content(BODY.format(marker=marker))
        out.append({"i": i, "marker": marker, "from": msg["From"], "id": msg["Message-ID"],
                    "raw": msg.as_bytes(policy=policy.SMTP)})
    return out


class Clients:
    """Concurrent SMTP senders; each message is resent until a 250 (or a 5xx)."""

    def __init__(self, port: int, messages: list[dict], concurrency: int, resend: float):
        self.port, self.queue = port, list(reversed(messages))
        self.concurrency, self.resend = concurrency, resend
        self.resent = 0
        self.lock = threading.Lock()
        self.acked: set[int] = set()
        self.refused: dict[int, str] = {}
        self.retries = 0

    def send_one(self, m: dict) -> str:
        try:
            with smtplib.SMTP("127.0.0.1", self.port, timeout=20) as client:
                client.sendmail(m["from"], [PORTAL], m["raw"])
            return "250"
        except (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused,
                smtplib.SMTPDataError) as e:
            code = getattr(e, "smtp_code", None) or next(
                iter(getattr(e, "recipients", {}).values()), (451,))[0]
            return f"{code}"
        except (OSError, smtplib.SMTPException):
            return "retry"

    def worker(self) -> None:
        while True:
            with self.lock:
                if not self.queue:
                    return
                m = self.queue.pop()
            while True:
                outcome = self.send_one(m)
                if outcome == "250" and m["i"] not in self.acked and \
                        random.random() < self.resend:  # as if the 250 had been lost
                    with self.lock:
                        self.acked.add(m["i"])
                        self.resent += 1
                    continue
                if outcome == "250":
                    with self.lock:
                        self.acked.add(m["i"])
                    break
                if outcome.startswith("5"):
                    with self.lock:
                        self.refused[m["i"]] = outcome
                    break
                with self.lock:
                    self.retries += 1
                time.sleep(random.uniform(0.05, 0.3))

    def run(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=self.worker, daemon=True)
                   for _ in range(self.concurrency)]
        for t in threads:
            t.start()
        return threads


def killer(server: Server, kills: int, gap: tuple[float, float], done: threading.Event,
           count: list[int], progress, total: int) -> None:
    """Kill -9 and restart the server *kills* times: the k-th kill comes after a random
    gap since the last one, or as soon as k/(kills+1) of the messages were answered,
    whichever is first, so every run gets all its kills whatever the gateway's speed (a
    faster gateway once finished 200 messages between two timed kills)."""
    for k in range(1, kills + 1):
        due = time.monotonic() + random.uniform(*gap)
        while progress() < k * total / (kills + 1) and time.monotonic() < due:
            if done.wait(0.05):
                return
        server.kill()
        count[0] += 1
        server.start()


def drain(config: Path, timeout: float) -> int:
    """Wait until the outbox has no queued rows; returns how many are left."""
    deadline = time.monotonic() + timeout
    while True:
        queued = [line for line in cli(config, "outbox", "list", "--json", "--state",
                                       "queued", "--limit", "100000").splitlines() if line]
        if not queued or time.monotonic() > deadline:
            return len(queued)
        time.sleep(1.0)


def count_deliveries(maildir: Path, messages: list[dict]) -> tuple[Counter, Counter, int]:
    """(staff copies per message, acknowledgements per message, other files)."""
    by_marker = {m["marker"]: m["i"] for m in messages}
    by_id = {m["id"]: m["i"] for m in messages}
    patients = {m["from"] for m in messages}
    staff, acks, other = Counter(), Counter(), 0
    marker_re = re.compile(r"SOAK[0-9a-f]+N\d{6}Z")
    for folder in maildir.glob("*/new"):
        for path in folder.iterdir():
            msg = message_from_bytes(path.read_bytes(), policy=policy.default)
            if folder.parent.name in patients:
                i = by_id.get(str(msg.get("In-Reply-To", "")).strip())
                acks[i] += 1 if i is not None else 0
                other += i is None
                continue
            found = marker_re.search(msg.get_body(("plain",)).get_content())
            if found and found.group(0) in by_marker:
                staff[by_marker[found.group(0)]] += 1
            else:
                other += 1
    return staff, acks, other


def soak(args) -> dict:
    work = Path(args.workdir or tempfile.mkdtemp(prefix="soak-"))
    work.mkdir(parents=True, exist_ok=True)
    db, cleanup = (pg_schema(args.db) if args.db.startswith("postgresql") else (args.db, None))
    try:
        config, port = write_config(work, db, args.lease)
        if cleanup:
            cli(config, "db", "upgrade")
        emails = setup_patients(config, work, args.patients)
        messages = make_messages(args.messages, emails, secrets.token_hex(3))
        return run_soak(args, config, port, work, messages)
    finally:
        if cleanup:
            cleanup()


def run_soak(args, config: Path, port: int, work: Path, messages: list[dict]) -> dict:
    server = Server(config, port, work / "serve.log")
    started = time.monotonic()
    server.start()
    server.wait_ready()
    clients = Clients(port, messages, args.clients, args.resend)
    done, kills = threading.Event(), [0]
    kill_thread = threading.Thread(target=killer, args=(server, args.kills, (
        args.min_gap, args.max_gap), done, kills, lambda: len(clients.acked) + len(
            clients.refused), len(messages)), daemon=True)
    kill_thread.start()
    for t in clients.run():
        t.join()
    done.set()
    kill_thread.join()
    server.wait_ready()
    left = drain(config, args.lease + 60)
    rc = server.stop()
    staff, acks, other = count_deliveries(work / "var" / "maildir", messages)
    acked = clients.acked
    return {
        "database": "postgresql" if args.db.startswith("postgresql") else "sqlite",
        "sent": len(messages), "acknowledged": len(acked), "refused": len(clients.refused),
        "lost": sum(1 for i in acked if staff[i] < 1 or acks[i] < 1),
        "doubled": sum(1 for i in range(len(messages)) if staff[i] > 1 or acks[i] > 1),
        "unexpected_files": other, "kills": kills[0], "retries": clients.retries,
        "resent_after_250": clients.resent,
        "outbox_queued": left, "serve_exit": rc,
        "seconds": round(time.monotonic() - started, 1), "workdir": str(work),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=2000)
    p.add_argument("--patients", type=int, default=5)
    p.add_argument("--clients", type=int, default=8, help="concurrent SMTP clients")
    p.add_argument("--kills", type=int, default=20, help="SIGKILLs (then restarts)")
    p.add_argument("--min-gap", type=float, default=1.0, help="seconds between kills, min")
    p.add_argument("--max-gap", type=float, default=4.0, help="seconds between kills, max")
    p.add_argument("--resend", type=float, default=0.05,
                   help="share of messages sent again after their 250 (a lost reply)")
    p.add_argument("--lease", type=float, default=10.0,
                   help="[delivery] lease_seconds for the run (claimed mail of a killed "
                        "server is retried after this)")
    p.add_argument("--db", default="", help="database URL (default: SQLite in the work dir); "
                   "postgresql://... gets a fresh schema, dropped afterwards")
    p.add_argument("--workdir", help="default: a new temporary directory")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    result = soak(args)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>18}: {value}")
    ok = (result["lost"] == 0 and result["doubled"] == 0 and result["outbox_queued"] == 0
          and result["acknowledged"] == result["sent"] and result["unexpected_files"] == 0)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
