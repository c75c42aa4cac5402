"""The cost of encryption at rest on inbound mail: bench/inbound.py's gateway measured with
encryption (as shipped) and without (the same gateway with its encrypted column types
turned into pass-throughs, a bench-only launcher), interleaved, three rounds each; prints
each round's messages per second and the ratio encrypted/plain as min/median/max.

    .venv/bin/python bench/encryption.py [--small N] [--large N]
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inbound import measure_gateway, setup_gateway  # noqa: E402

PLAIN = [sys.executable, "-c", """
import sys
from gateway import sealed
for cls in (sealed.EncryptedText, sealed.EncryptedBytes):
    cls.process_bind_param = lambda self, value, dialect: value
    cls.process_result_value = lambda self, value, dialect: value
from gateway.cli import main
sys.exit(main(sys.argv[1:]))
"""]


def one_round(launcher, cases) -> list[float]:
    with tempfile.TemporaryDirectory() as d:
        proc, port = setup_gateway(Path(d), launcher)
        try:
            asyncio.run(measure_gateway(Path(d), port, 20, 10, 2_000))  # warm up
            return [asyncio.run(measure_gateway(Path(d), port, total, 10, size))
                    for size, total in cases]
        finally:
            proc.terminate()
            proc.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", type=int, default=200, help="2 KB messages per round")
    ap.add_argument("--large", type=int, default=40, help="200 KB messages per round")
    args = ap.parse_args()
    cases = [(2_000, args.small), (200_000, args.large)]
    runs = {"encrypted": [], "plain": []}
    for _ in range(3):
        for name, launcher in (("plain", PLAIN), ("encrypted", None)):
            runs[name].append(one_round(launcher, cases))
    print(f"{'case':>18} {'plain msg/s (3 rounds)':>26} {'encrypted msg/s':>24} "
          f"{'ratio min/median/max':>22}")
    for i, (size, total) in enumerate(cases):
        plain = [r[i] for r in runs["plain"]]
        enc = [r[i] for r in runs["encrypted"]]
        ratios = sorted(e / p for e, p in zip(enc, plain))
        print(f"{size // 1000:>4}KB x{total:<4} 10 sess "
              f"{' '.join(f'{v:7.1f}' for v in plain):>26} "
              f"{' '.join(f'{v:7.1f}' for v in enc):>24} "
              f"{ratios[0]:6.2f} {statistics.median(ratios):6.2f} {ratios[-1]:6.2f}")


if __name__ == "__main__":
    main()
