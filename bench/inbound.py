"""Inbound throughput and latency: messages per second end to end (client -> 250 -> staff
copy written) and the time from the end of DATA to the 250 (p50/p99), for 2 KB text at 1
and 10 sessions, 2 KB with a small PDF at 10, and 200 KB text at 1 and 10, next to a stock
aiosmtpd server whose handler only answers 250 (aiosmtpd.handlers.Sink), measured in the
same run with the same client; three repetitions, min/median/max.  With ``--compare
OTHER/.venv/bin/portal-gateway`` a second gateway (another checkout, e.g. main) is measured
in the same run, interleaved case by case; ``--workers N`` runs every gateway measured with
``[gateway] workers = N``.  ``--memory`` instead sends ten 20 MB
messages (a short text and a 15 MB PDF) at once over ten sessions and prints the peak
resident memory (VmHWM) of the gateway process next to the aiosmtpd Sink's, each started
fresh for every run; ``--cli`` measures another checkout's portal-gateway.  ``--redelivery`` kills a gateway with -9 while
its outbox worker holds mail (a relay that never answers DATA), restarts it and times the
delivery of that mail.  Both servers run as separate processes on loopback.

    .venv/bin/python bench/inbound.py [--small N] [--large N] [--runs 3] [--workers N]
        [--compare /work/main/.venv/bin/portal-gateway] [--redelivery]
    .venv/bin/python bench/inbound.py --memory [--runs 3] [--cli PATH]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
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


PDF = (b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[3 0 R]"
       b"/Count 1>>endobj\n3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 612 792]>>endobj\n"
       + b"%" + b"x" * 6000 + b"\ntrailer<</Root 1 0 R>>\n%%EOF\n")


def message(sender: str, size: int, n: int, pdf: bool = False) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"] = sender, "portal@portal.example.org"
    msg["Subject"] = f"Appointment question {n}"
    msg["Message-ID"] = make_msgid(domain="example.com")  # each message is new (no dedupe)
    line = "I would like to reschedule my appointment next week if possible. "
    msg.set_content((line * (size // len(line) + 1))[:size])
    if pdf:
        msg.add_attachment(PDF, maintype="application", subtype="pdf", filename="scan.pdf")
    return msg.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


async def client(port: int, sender: str, count: int, size: int, pdf: bool = False,
                 latencies: list | None = None) -> None:
    """COUNT messages in one session; the time of each DATA command (the message over
    loopback, then the server's reply to the final dot) goes to LATENCIES."""
    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=120)
    await smtp.connect()
    await smtp.ehlo()
    for n in range(count):
        raw = message(sender, size, n, pdf)
        await smtp.mail(sender)
        await smtp.rcpt("portal@portal.example.org")
        start = time.perf_counter()
        response = await smtp.data(raw)
        if latencies is not None:
            latencies.append(time.perf_counter() - start)
        if response.code != 250:
            raise SystemExit(f"refused: {response.code} {response.message}")
    await smtp.quit()


async def drive(port: int, total: int, sessions: int, size: int, pdf: bool = False,
                latencies: list | None = None) -> float:
    per = total // sessions
    start = time.perf_counter()
    await asyncio.gather(*(client(port, f"p{i}@example.com", per, size, pdf, latencies)
                           for i in range(sessions)))
    return time.perf_counter() - start


def staff_copies(data: Path) -> int:
    new = data / "var" / "maildir" / "frontdesk@practice.example.org" / "new"
    return len(os.listdir(new)) if new.exists() else 0


def setup_gateway(tmp: Path, launcher: list[str] | None = None,
                  replace: dict[str, str] | None = None) -> tuple[subprocess.Popen, int]:
    """Configure, import and activate the bench patients, start `serve`; `launcher`
    replaces the portal-gateway executable (bench/encryption.py runs one without
    encryption); `replace` changes lines of the example config."""
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
    for old, new in (replace or {}).items():
        text = text.replace(old, new)
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
    proc = serve(cli, cfg)
    wait_port(port)
    return proc, port


def serve(cli: list[str], cfg: Path) -> subprocess.Popen:
    log = open(os.environ.get("BENCH_SERVER_LOG", os.devnull), "a")
    return subprocess.Popen([*cli, "--config", str(cfg), "serve"], stdout=log, stderr=log)


async def measure_gateway(tmp: Path, port: int, total: int, sessions: int, size: int,
                          pdf: bool = False, latencies: list | None = None) -> float:
    before = staff_copies(tmp)
    start = time.perf_counter()
    await drive(port, total, sessions, size, pdf, latencies)
    while staff_copies(tmp) < before + total:
        await asyncio.sleep(0.02)
    return total / (time.perf_counter() - start)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, int(len(ordered) * q + 0.999999) - 1))]


def spread(values: list[float], fmt: str = "{:.1f}") -> str:
    """min/median/max"""
    return "/".join(fmt.format(v) for v in (min(values), statistics.median(values),
                                            max(values)))


# (label, size, sessions, pdf, which count)
CASES = (("2KB text", 2_000, 1, False, "small"), ("2KB text", 2_000, 10, False, "small"),
         ("2KB+PDF", 2_000, 10, True, "small"), ("200KB text", 200_000, 1, False, "large"),
         ("200KB text", 200_000, 10, False, "large"))


def throughput(args, gateways: dict) -> None:
    """Every case for every gateway and the sink, interleaved, ARGS.runs times."""
    sink_port = free_port()
    sink = subprocess.Popen([sys.executable, "-m", "aiosmtpd", "-n", "-l",
                             f"127.0.0.1:{sink_port}", "-c", "aiosmtpd.handlers.Sink"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started = {}
    try:
        wait_port(sink_port)
        for name, cli in gateways.items():
            d = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
            proc, port = setup_gateway(d, cli, workers_config(args.workers))
            started[name] = (d, proc, port)
            asyncio.run(measure_gateway(d, port, 20, 10, 2_000))  # warm up
        results: dict = {}
        for _ in range(args.runs):
            for case in CASES:
                label, size, sessions, pdf, count = case
                total = getattr(args, count)
                lat: list = []
                sink_rate = total / asyncio.run(drive(sink_port, total, sessions, size, pdf,
                                                      lat))
                results.setdefault(("aiosmtpd-sink", case), []).append(
                    (sink_rate, percentile(lat, .5), percentile(lat, .99), 1.0))
                for name, (d, proc, port) in started.items():
                    lat = []
                    rate = asyncio.run(measure_gateway(d, port, total, sessions, size, pdf,
                                                       lat))
                    results.setdefault((name, case), []).append(
                        (rate, percentile(lat, .5), percentile(lat, .99), rate / sink_rate))
        report(results, [*started, "aiosmtpd-sink"], args)
    finally:
        for d, proc, port in started.values():
            proc.terminate()
            proc.wait(60)
            shutil.rmtree(d, ignore_errors=True)
        sink.terminate()
        sink.wait(30)


def workers_config(workers: int) -> dict[str, str]:
    """Config replacements for ``[gateway] workers = WORKERS`` (processes sharing the
    listeners)."""
    return {"workers = 1 ": f"workers = {workers} "} if workers != 1 else {}


def report(results: dict, names: list[str], args) -> None:
    print(f"{args.runs} runs, min/median/max; latency: DATA command to its reply, ms; "
          f"[gateway] workers = {args.workers}")
    print(f"{'case':<11} {'sess':>4} {'server':<14} {'msg/s':>18} {'p50 ms':>16} "
          f"{'p99 ms':>18} {'ratio to sink':>16}")
    for case in CASES:
        for name in names:
            rows = results[(name, case)]
            print(f"{case[0]:<11} {case[2]:>4} {name:<14} "
                  f"{spread([r[0] for r in rows]):>18} "
                  f"{spread([r[1] * 1000 for r in rows]):>16} "
                  f"{spread([r[2] * 1000 for r in rows]):>18} "
                  f"{spread([r[3] for r in rows], '{:.3f}'):>16}")


class StallingRelay:
    """A smarthost that takes DATA and never answers while `stall` is set."""

    def __init__(self):
        self.stall, self.received = True, []
        self.in_data = asyncio.Event()

    async def handle_DATA(self, server, session, envelope):
        if self.stall:
            self.in_data.set()
            await asyncio.sleep(3600)
        self.received.append(time.perf_counter())
        return "250 OK"


async def redelivery(cli: list[str], messages: int = 10, timeout: float = 120) -> tuple:
    """Kill -9 a gateway whose worker holds mail, restart it: (seconds from the restart to
    the last of that mail at the relay, seconds until it listened again)."""
    from aiosmtpd.smtp import SMTP
    relay = StallingRelay()
    server = await asyncio.get_running_loop().create_server(lambda: SMTP(relay),
                                                            "127.0.0.1", 0)
    d = Path(tempfile.mkdtemp(prefix="bench-redelivery-"))
    relay_port = server.sockets[0].getsockname()[1]
    proc, port = await asyncio.to_thread(setup_gateway, d, cli, {
        'mode = "maildir"': 'mode = "relay"', "relay_port = 25": f"relay_port = {relay_port}",
        'relay_tls = "starttls"': 'relay_tls = "none"',
        "relay_timeout_seconds = 60": "relay_timeout_seconds = 600"})
    try:
        await drive(port, messages, 1, 2_000)
        await asyncio.wait_for(relay.in_data.wait(), 60)
        proc.send_signal(signal.SIGKILL)
        await asyncio.to_thread(proc.wait)
        relay.stall = False
        restarted = time.perf_counter()
        proc = serve(cli, d / "config.toml")
        await asyncio.to_thread(wait_port, port)
        listening = time.perf_counter() - restarted
        expected = 2 * messages  # a staff copy and an acknowledgement each
        while len(relay.received) < expected:
            if time.perf_counter() - restarted > timeout:
                return None, listening
            await asyncio.sleep(0.05)
        return relay.received[expected - 1] - restarted, listening
    finally:
        proc.terminate()
        await asyncio.to_thread(proc.wait, 60)
        server.close()
        shutil.rmtree(d, ignore_errors=True)


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
    ap.add_argument("--runs", type=int, default=3, help="repetitions (min/median/max)")
    ap.add_argument("--gateway", metavar="CLI", default=CLI,
                    help="the portal-gateway executable to measure (default: this venv's)")
    ap.add_argument("--compare", metavar="CLI", help="another portal-gateway executable "
                    "(e.g. main's checkout), measured in the same run")
    ap.add_argument("--workers", type=int, default=1,
                    help="[gateway] workers of every gateway measured (processes sharing "
                    "the listeners; 2 uses both cores of a two-core host)")
    ap.add_argument("--redelivery", action="store_true",
                    help="also time the delivery of mail held by a gateway killed with -9")
    ap.add_argument("--no-throughput", action="store_true")
    ap.add_argument("--memory", action="store_true",
                    help="only ten 20 MB messages at once: peak RSS vs the aiosmtpd Sink")
    ap.add_argument("--cli", help="with --memory: the portal-gateway executable to measure")
    args = ap.parse_args()
    if args.memory:
        memory(args.runs, args.cli)
        return
    gateways = {"gateway": [args.gateway]}
    if args.compare:
        gateways["compare"] = [args.compare]
    if not args.no_throughput:
        throughput(args, gateways)
    if args.redelivery:
        print("kill -9 with mail claimed, restart: seconds to the last of it delivered "
              "(seconds until listening again)")
        for name, cli in gateways.items():
            for _ in range(args.runs):
                took, listening = asyncio.run(redelivery(cli))
                shown = f"{took:.1f}" if took is not None else "not within 120"
                print(f"{name:<10} {shown:>16} ({listening:.1f})")


if __name__ == "__main__":
    main()
