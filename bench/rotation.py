"""Key rotation time: `keys rotate` (gateway.rotation) over N stored messages on SQLite
(subject, body of about 1 KB, quoted history: three sealed values a row), three times,
each time under a new key; next to a peer measured in the same run: reading every
message through the ORM (which decrypts each value once).  Prints seconds per run,
rows per second, and the ratio rotate/peer as min/median/max.

    .venv/bin/python bench/rotation.py [--messages 100000]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert, select  # noqa: E402

from gateway import crypto, rotation  # noqa: E402
from gateway.config import build_config  # noqa: E402
from gateway.models import Message, Patient, Thread  # noqa: E402
from gateway.services import Services  # noqa: E402

BODY = ("I would like to move my appointment to next week, in the afternoon if that is "
        "possible; my number has changed too. ") * 8


def seed(s: Services, n: int) -> None:
    with s.transaction() as session:
        p = Patient(account_number="1001", first_name="Ana", last_name="Lopez",
                    email="ana@example.com", state="CA", status="active")
        session.add(p)
        session.flush()
        t = Thread(public_id="t1", patient_id=p.id, state="open")
        session.add(t)
        session.flush()
        pid, tid = p.id, t.id
    chunk = 5_000
    for start in range(0, n, chunk):
        rows = [{"thread_id": tid, "patient_id": pid, "direction": "patient",
                 "subject": f"Appointment {i}", "body": BODY, "history": "> earlier text"}
                for i in range(start, min(n, start + chunk))]
        with s.engine.begin() as conn:
            conn.execute(insert(Message), rows)


def read_all(s: Services) -> int:
    with s.factory() as session:
        return sum(1 for _ in session.execute(select(Message.subject, Message.body,
                                                     Message.history)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=100_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        cfg = build_config({"gateway": {"data_dir": f"{d}/var", "rules_dir": str(ROOT / "rules"),
                                        "templates_dir": str(ROOT / "templates")}},
                           Path(d) / "config.toml")
        s = Services.create(cfg)
        t0 = time.perf_counter()
        seed(s, args.messages)
        print(f"seeded {args.messages} messages in {time.perf_counter() - t0:.1f} s")
        rot, peer = [], []
        for _ in range(3):
            t0 = time.perf_counter()
            assert read_all(s) == args.messages
            peer.append(time.perf_counter() - t0)
            crypto.append_key(cfg.key_file)
            crypto.install(crypto.Keyring(crypto.parse_keys(cfg.key_file.read_text(), "k")))
            t0 = time.perf_counter()
            report = rotation.rotate(s, batch=500)
            rot.append(time.perf_counter() - t0)
            assert report.per_table["messages"] == 3 * args.messages, report.per_table
        s.close()
    ratios = sorted(r / p for r, p in zip(rot, peer))
    print(f"rotate {args.messages} messages: " + ", ".join(f"{r:.1f} s" for r in rot)
          + f" (median {args.messages / statistics.median(rot):.0f} rows/s)")
    print("peer, read every message through the ORM: "
          + ", ".join(f"{p:.1f} s" for p in peer))
    print(f"ratio rotate/peer min/median/max: {ratios[0]:.1f} {statistics.median(ratios):.1f} "
          f"{ratios[-1]:.1f}")


if __name__ == "__main__":
    main()
