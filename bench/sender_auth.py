"""What sender authentication costs per message, and what the Argon2 semaphore buys.

1. `verify()` (DKIM + SPF + DMARC against a local DNS stub, real 2048-bit key) against its
   peer, parsing the same message: the ratio says how much of a message's CPU the checks take
   (DNS answers from loopback, so network time is not counted).
2. Event-loop responsiveness during an AUTH burst: the longest gap of a 10 ms ticker while 8
   Argon2 checks run through `gateway.smtp.auth.Authenticator.check` (off the loop) vs
   while the same 8 checks run on the loop (how AUTH worked before).
Each figure: min/median/max of three runs.  Usage: .venv/bin/python bench/sender_auth.py
"""
from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import dkim  # noqa: E402
from aiosmtpd.smtp import LoginPassword  # noqa: E402
from argon2 import PasswordHasher  # noqa: E402

from gateway.auth.resolver import Resolver  # noqa: E402
from gateway.auth.verdict import verify  # noqa: E402
from gateway.smtp.auth import Authenticator  # noqa: E402
from gateway.steps.parse import parse_bytes  # noqa: E402
from tests.dnsstub import DNSStub  # noqa: E402
from tests.helpers import dkim_keypair, patient_mail  # noqa: E402


def three(fn):
    runs = sorted(fn() for _ in range(3))
    return runs[0], statistics.median(runs), runs[-1]


def verify_ratio(n: int = 50) -> float:
    stub = DNSStub()
    key, txt = dkim_keypair(Path(tempfile.mkdtemp()))
    stub.resolver.txt("s1._domainkey.example.com", txt)
    stub.resolver.txt("_dmarc.example.com", "v=DMARC1; p=reject")
    stub.resolver.txt("example.com", "v=spf1 ip4:127.0.0.1 -all")
    resolver = Resolver(2.0, [stub.address])
    raw = patient_mail().as_bytes().replace(b"\n", b"\r\n")
    raw = dkim.sign(raw, b"s1", b"example.com", key.read_bytes(),
                    include_headers=[b"from", b"to", b"subject"]) + raw
    msg, _ = parse_bytes(raw)

    def timed(fn) -> float:
        start = time.perf_counter()
        for _ in range(n):
            fn()
        return time.perf_counter() - start
    try:
        checked = timed(lambda: verify(raw, msg, "example.com", resolver,
                                       client_ip="127.0.0.1", mail_from="ana@example.com"))
        parsed = timed(lambda: parse_bytes(raw))
    finally:
        stub.stop()
    return checked / parsed


async def loop_gap(off_loop: bool) -> float:
    hashed = PasswordHasher().hash("secret")
    auth = Authenticator({"app": hashed})
    auth.dummy  # noqa: B018  (made by the first check: made here, outside the measure)
    gaps, stop = [], asyncio.Event()

    async def ticker():
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now
    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.05)
    data = LoginPassword(b"app", b"wrong")
    if off_loop:
        await asyncio.gather(*(auth.check("b", f"10.0.0.{i}", data) for i in range(8)))
    else:
        for _ in range(8):
            auth._verify("app", b"wrong")
            await asyncio.sleep(0)
    stop.set()
    await task
    return max(gaps)


def main() -> None:
    lo, med, hi = three(verify_ratio)
    print(f"verify / parse time per message: min {lo:.1f}x  median {med:.1f}x  max {hi:.1f}x")
    pairs = [(asyncio.run(loop_gap(False)), asyncio.run(loop_gap(True))) for _ in range(3)]
    ratios = sorted(on / off for on, off in pairs)
    off_ms = statistics.median(off for _, off in pairs) * 1000
    on_ms = statistics.median(on for on, _ in pairs) * 1000
    print("longest event-loop stall during 8 Argon2 checks, on-loop / off-loop: "
          f"min {ratios[0]:.1f}x  median {ratios[1]:.1f}x  max {ratios[2]:.1f}x"
          f"  (medians: off-loop {off_ms:.0f} ms, on-loop {on_ms:.0f} ms)")


if __name__ == "__main__":
    main()
