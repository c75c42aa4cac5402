"""Inbound throughput: messages per second end to end (client -> 250 -> staff copy written),
for 2 KB and 200 KB messages at 1 and 10 concurrent SMTP sessions, next to a stock aiosmtpd
server whose handler only answers 250 (aiosmtpd.handlers.Sink), measured in the same run
with the same client.  Both servers run as separate processes on loopback.

With --memory: ten 20 MB messages (a short text and a 15 MB PDF attachment) sent at once
over ten sessions; the peak resident memory (VmHWM) of the gateway process next to the
stock aiosmtpd Sink's, each started fresh for every one of --runs runs; --cli runs another
checkout's portal-gateway (e.g. /work/main/.venv/bin/portal-gateway) for a before figure.

    .venv/bin/python bench/inbound.py [--small N] [--large N]
    .venv/bin/python bench/inbound.py --memory [--runs 3] [--cli PATH]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import aiosmtplib

ROOT = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).parent / "portal-gateway")
SESSIONS = 10


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"server on {port} did not start")


def message(sender: str, size: int, n: int) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"] = sender, "portal@portal.example.org"
    msg["Subject"] = f"Appointment question {n}"
    msg["Message-ID"] = make_msgid(domain="example.com")  # each message is new (no dedupe)
    line = "I would like to reschedule my appointment next week if possible. "
    msg.set_content((line * (size // len(line) + 1))[:size])
    return msg.as_bytes()


async def client(port: int, sender: str, count: int, size: int) -> None:
    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=120)
    await smtp.connect()
    for n in range(count):
        await smtp.sendmail(sender, ["portal@portal.example.org"], message(sender, size, n))
    await smtp.quit()


async def drive(port: int, total: int, sessions: int, size: int) -> float:
    per = total // sessions
    start = time.perf_counter()
    await asyncio.gather(*(client(port, f"p{i}@example.com", per, size)
                           for i in range(sessions)))
    return time.perf_counter() - start


def staff_copies(data: Path) -> int:
    new = data / "var" / "maildir" / "frontdesk@practice.example.org" / "new"
    return len(os.listdir(new)) if new.exists() else 0


def setup_gateway(tmp: Path, launcher: list[str] | None = None) -> tuple[subprocess.Popen, int]:
    """Configure, import and activate the bench patients, start `serve`; `launcher`
    replaces the portal-gateway executable (bench/encryption.py runs one without
    encryption)."""
    cli = launcher or [CLI]
    port = free_port()
    text = (ROOT / "config.example.toml").read_text()
    text = text.replace("inbound_port = 2525", f"inbound_port = {port}")
    text = text.replace("submission_port = 2587", f"submission_port = {free_port()}")
    text = text.replace("port = 8025", f"port = {free_port()}")
    text = text.replace("ops_port = 8026", f"ops_port = {free_port()}")
    text = text.replace('rules_dir = "rules"', f'rules_dir = "{ROOT}/rules"')
    text = text.replace('templates_dir = "templates"', f'templates_dir = "{ROOT}/templates"')
    text = text.replace("poll_seconds = 1.0", "poll_seconds = 0.2")
    text = text.replace("max_messages_per_patient_per_hour = 20",
                        "max_messages_per_patient_per_hour = 0")  # a benchmark, not abuse
    cfg = tmp / "config.toml"
    cfg.write_text(text)
    roster = tmp / "roster.csv"
    roster.write_text("account_number,first_name,last_name,email,state\n" + "".join(
        f"{1000 + i},Pat{i},Bench,p{i}@example.com,CA\n" for i in range(SESSIONS)))
    subprocess.run([*cli, "--config", str(cfg), "patients", "import", str(roster)],
                   check=True, capture_output=True)
    for i in range(SESSIONS):
        subprocess.run([*cli, "--config", str(cfg), "patients", "activate", str(1000 + i)],
                       check=True, capture_output=True)
    log = open(os.environ.get("BENCH_SERVER_LOG", os.devnull), "w")
    proc = subprocess.Popen([*cli, "--config", str(cfg), "serve"], stdout=log, stderr=log)
    wait_port(port)
    return proc, port


async def measure_gateway(tmp: Path, port: int, total: int, sessions: int, size: int) -> float:
    before = staff_copies(tmp)
    start = time.perf_counter()
    await drive(port, total, sessions, size)
    while staff_copies(tmp) < before + total:
        await asyncio.sleep(0.02)
    return total / (time.perf_counter() - start)


BIG = 20_000_000


def big_messages(count: int) -> list[bytes]:
    """`count` messages of about 20 MB on the wire, each new (its own Message-ID)."""
    pdf = b"%PDF-1.4\n" + os.urandom(BIG * 3 // 4 - 20_000)
    out = []
    for n in range(count):
        msg = EmailMessage()
        msg["From"], msg["To"] = f"p{n}@example.com", "portal@portal.example.org"
        msg["Subject"], msg["Message-ID"] = f"Scan {n}", make_msgid(domain="example.com")
        msg.set_content("Here is the scan you asked for.")
        msg.add_attachment(pdf, maintype="application", subtype="pdf", filename="scan.pdf")
        out.append(msg.as_bytes())
    return out


async def send_at_once(port: int, messages: list[bytes]) -> list[int]:
    async def one(n: int, data: bytes) -> int:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=600)
        await smtp.connect()
        try:
            await smtp.sendmail(f"p{n}@example.com", ["portal@portal.example.org"], data)
            return 250
        except aiosmtplib.SMTPResponseException as e:
            return e.code
        finally:
            await smtp.quit()
    return await asyncio.gather(*(one(n, m) for n, m in enumerate(messages)))


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise SystemExit("no VmHWM in /proc")


def memory(runs: int, cli: str | None) -> None:
    messages = big_messages(SESSIONS)
    print(f"{len(messages)} messages of {len(messages[0]) / 1e6:.1f} MB at once, "
          f"peak RSS (VmHWM) in MB, each server started fresh per run")
    gateway, sink = [], []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as d:
            proc, port = setup_gateway(Path(d), [cli] if cli else None)
            try:
                codes = asyncio.run(send_at_once(port, messages))
                gateway.append(peak_rss_mb(proc.pid))
            finally:
                proc.terminate()
                proc.wait(60)
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "aiosmtpd", "-n", "-l",
                                 f"127.0.0.1:{port}", "-c", "aiosmtpd.handlers.Sink"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port(port)
            asyncio.run(send_at_once(port, messages))
            sink.append(peak_rss_mb(proc.pid))
        finally:
            proc.terminate()
            proc.wait(60)
        print(f"  run: gateway {gateway[-1]:.0f} MB (replies {sorted(set(codes))}), "
              f"aiosmtpd-sink {sink[-1]:.0f} MB")
    mmm = lambda xs: f"{min(xs):.0f}/{sorted(xs)[len(xs) // 2]:.0f}/{max(xs):.0f}"  # noqa: E731
    print(f"gateway min/median/max {mmm(gateway)} MB, aiosmtpd-sink {mmm(sink)} MB, "
          f"ratio of medians {sorted(gateway)[len(gateway) // 2] / sorted(sink)[len(sink) // 2]:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", type=int, default=300, help="2 KB messages per case")
    ap.add_argument("--large", type=int, default=60, help="200 KB messages per case")
    ap.add_argument("--memory", action="store_true", help="ten 20 MB messages: peak RSS")
    ap.add_argument("--runs", type=int, default=3, help="runs of --memory")
    ap.add_argument("--cli", help="portal-gateway executable to measure (default: this one)")
    args = ap.parse_args()
    if args.memory:
        memory(args.runs, args.cli)
        return
    sink_port = free_port()
    sink = subprocess.Popen([sys.executable, "-m", "aiosmtpd", "-n", "-l",
                             f"127.0.0.1:{sink_port}", "-c", "aiosmtpd.handlers.Sink"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with tempfile.TemporaryDirectory() as d:
        gw, gw_port = setup_gateway(Path(d))
        try:
            wait_port(sink_port)
            print(f"{'size':>6} {'sessions':>8} {'msgs':>5} {'gateway msg/s':>14} "
                  f"{'aiosmtpd-sink msg/s':>20} {'ratio':>6}")
            for size, total in ((2_000, args.small), (200_000, args.large)):
                for sessions in (1, 10):
                    g = asyncio.run(measure_gateway(Path(d), gw_port, total, sessions, size))
                    s = total / asyncio.run(drive(sink_port, total, sessions, size))
                    print(f"{size // 1000:>4}KB {sessions:>8} {total:>5} {g:>14.1f} "
                          f"{s:>20.1f} {g / s:>6.2f}")
        finally:
            gw.terminate()
            sink.terminate()
            gw.wait(30)
            sink.wait(30)


if __name__ == "__main__":
    main()
