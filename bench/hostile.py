"""Hostile content and idle sessions do not stall anyone else.

1. Adversarial content: one SMTP session keeps sending hostile messages (CSS url() bait,
   3 MB of costly HTML past the CPU budget, 1,500-deep nesting, 20,000 parts, data: URI
   bait).  Meanwhile a second session sends ordinary 2 KB messages and /healthz is polled.
   Printed: time to 250 and /healthz latency under attack, next to the same measured
   without the attack in the same run (the peer), min/median/max of three rounds.
2. Slots: 100 idle sessions from one network (127.0.1.0/24), then a client from another
   network (127.0.2.1) delivers a 2 KB message: how many of the 100 got a slot, and the
   other network's reply and time to 250.

    .venv/bin/python bench/hostile.py [--rounds 3] [--messages 10]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inbound import CLI, ROOT, free_port, message, wait_port  # noqa: E402

PORTAL = "portal@portal.example.org"


def setup(tmp: Path) -> tuple[subprocess.Popen, int, int]:
    smtp, http = free_port(), free_port()
    text = (ROOT / "config.example.toml").read_text()
    for old, new in (("inbound_port = 2525", f"inbound_port = {smtp}"),
                     ("submission_port = 2587", f"submission_port = {free_port()}"),
                     ("port = 8025", f"port = {http}"),
                     ('rules_dir = "rules"', f'rules_dir = "{ROOT}/rules"'),
                     ('templates_dir = "templates"', f'templates_dir = "{ROOT}/templates"'),
                     ("max_messages_per_patient_per_hour = 20",
                      "max_messages_per_patient_per_hour = 0"),
                     ("max_message_bytes = 26214400", "max_message_bytes = 8000000")):
        text = text.replace(old, new)
    cfg = tmp / "config.toml"
    cfg.write_text(text)
    roster = tmp / "roster.csv"
    roster.write_text("account_number,first_name,last_name,email,state\n"
                      "1000,Pat,Ordinary,p0@example.com,CA\n1001,Pat,Hostile,p1@example.com,CA\n")
    run = [CLI, "--config", str(cfg)]
    subprocess.run(run + ["patients", "import", str(roster)], check=True, capture_output=True)
    for account in ("1000", "1001"):
        subprocess.run(run + ["patients", "activate", account], check=True,
                       capture_output=True)
    log = open(os.environ.get("BENCH_SERVER_LOG", os.devnull), "w")
    proc = subprocess.Popen(run + ["serve"], stdout=log, stderr=log)
    wait_port(smtp)
    wait_port(http)
    return proc, smtp, http


def head(n: int, ctype: str) -> str:
    return (f"From: p1@example.com\r\nTo: {PORTAL}\r\nSubject: hostile {n}\r\n"
            f"Message-ID: <hostile.{n}.{time.time_ns()}@example.com>\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: {ctype}\r\n\r\n")


def hostile(n: int) -> bytes:
    kind = n % 5
    if kind == 0:  # CSS url() bait (cubic for the old pattern)
        body = ("<style>p{background:url(" + (" " * 900 + "\r\n") * 20 + "x}</style><p>hi</p>")
        return (head(n, "text/html") + body + "\r\n").encode()
    if kind == 1:  # costly HTML: past the CPU budget
        row = "<tr>" + "".join(f"<td><b>{i}</b> <i>c</i></td>" for i in range(15)) + "</tr>\r\n"
        return (head(n, "text/html") + row * (3_000_000 // len(row)) + "\r\n").encode()
    if kind == 2:  # 1,500-deep nesting
        opening = "".join(f'--b{i}\r\nContent-Type: multipart/mixed; boundary="b{i + 1}"\r\n\r\n'
                          for i in range(1499))
        return (head(n, 'multipart/mixed; boundary="b0"') + opening + "--b1499\r\n\r\nx\r\n"
                ).encode()
    if kind == 3:  # 20,000 parts
        part = "--p\r\nContent-Type: text/plain\r\n\r\nx\r\n"
        return (head(n, 'multipart/mixed; boundary="p"') + part * 20_000 + "--p--\r\n").encode()
    bait = ("data:;a=" + "data:" * 100 + " ") * 2_000  # data: URI bait in plain text
    lines = "\r\n".join(bait[i:i + 900] for i in range(0, len(bait), 900))
    return (head(n, "text/plain") + lines + "\r\n").encode()


async def smtp_session(port: int, sender: str, messages, local: str = "127.0.0.1"):
    """Send each message in one session; yields (reply code, seconds to the reply)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(local, 0))

    async def reply() -> bytes:
        lines = []
        while True:
            line = await reader.readline()
            lines.append(line)
            if not line or line[3:4] != b"-":
                return b"".join(lines)

    async def say(line: bytes) -> bytes:
        writer.write(line)
        return await reply()
    results = []
    try:
        await reply()
        await say(b"EHLO bench.example\r\n")
        for raw in messages:
            for line in (f"MAIL FROM:<{sender}>\r\n", f"RCPT TO:<{PORTAL}>\r\n", "DATA\r\n"):
                await say(line.encode())
            start = time.perf_counter()
            answer = await say(raw + b".\r\n")
            results.append((int(answer[:3] or 0), time.perf_counter() - start))
        await say(b"QUIT\r\n")
    finally:
        writer.close()
    return results


async def healthz(port: int) -> float:
    start = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.0\r\nHost: bench\r\n\r\n")
    await reader.read()
    writer.close()
    return time.perf_counter() - start


async def ordinary(smtp: int, http: int, count: int) -> tuple[list, list]:
    """`count` 2 KB messages, 0.2 s apart, in one session; /healthz polled all along."""
    done = asyncio.Event()

    async def poll() -> list[float]:
        times = []
        while not done.is_set():
            times.append(await healthz(http))
            await asyncio.sleep(0.1)
        return times

    async def send() -> list:
        results = []
        for i in range(count):
            raw = message("p0@example.com", 2_000, i).replace(b"\n", b"\r\n")
            results += await smtp_session(smtp, "p0@example.com", [raw])
            await asyncio.sleep(0.2)
        done.set()
        return results
    results, health = await asyncio.gather(send(), poll())
    assert all(code == 250 for code, _ in results), results
    return [t for _, t in results], health


async def attack_round(smtp: int, http: int, count: int) -> tuple[list, list, list]:
    stop = asyncio.Event()
    codes: list[int] = []

    async def attacker():
        n = 0
        while not stop.is_set():
            codes.extend(c for c, _ in await smtp_session(smtp, "p1@example.com",
                                                          [hostile(n)]))
            n += 1
    task = asyncio.create_task(attacker())
    await asyncio.sleep(0.5)  # the attack is under way
    times, health = await ordinary(smtp, http, count)
    stop.set()
    await task
    return times, health, codes


async def slots(smtp: int) -> tuple[int, int, int, float]:
    idle = []
    got = refused = 0
    for i in range(100):
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", smtp, local_addr=(f"127.0.1.{1 + i % 100}", 0))
        banner = await reader.readline()
        got, refused = got + banner.startswith(b"220"), refused + banner.startswith(b"421")
        idle.append(writer)
    msg = message("p0@example.com", 2_000, 99).replace(b"\n", b"\r\n")
    start = time.perf_counter()
    (code, _), = await smtp_session(smtp, "p0@example.com", [msg], local="127.0.2.1")
    elapsed = time.perf_counter() - start
    for writer in idle:
        writer.close()
    return got, refused, code, elapsed


def mmm(values: list[float]) -> str:
    return (f"{min(values) * 1000:7.0f} {statistics.median(values) * 1000:7.0f} "
            f"{max(values) * 1000:7.0f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--messages", type=int, default=25, help="2 KB messages per round")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        proc, smtp, http = setup(Path(d))
        try:
            print("ms to 250 (2 KB) and /healthz, per round: min median max")
            for r in range(args.rounds):
                calm_t, calm_h = asyncio.run(ordinary(smtp, http, args.messages))
                hot_t, hot_h, codes = asyncio.run(attack_round(smtp, http, args.messages))
                print(f"round {r + 1}: calm 250 {mmm(calm_t)} | attacked 250 {mmm(hot_t)} "
                      f"(max/calm median {max(hot_t) / statistics.median(calm_t):5.1f}) | "
                      f"healthz calm {mmm(calm_h)} attacked {mmm(hot_h)} | hostile replies "
                      f"{sorted(set(codes))} x{len(codes)}")
            got, refused, code, elapsed = asyncio.run(slots(smtp))
            print(f"slots: 100 idle sessions from 127.0.1.0/24: {got} got a slot, {refused} "
                  f"refused 421; 127.0.2.1 then got {code} in {elapsed * 1000:.0f} ms")
        finally:
            proc.terminate()
            proc.wait(30)


if __name__ == "__main__":
    main()
