"""How long `portal-gateway --help` takes, next to the bare interpreter start-up.

Prints min/median/max of three runs of each, in the same run, and the ratio of medians:

    .venv/bin/python bench/cli_help.py [--runs 3] [--src DIR]

--src DIR runs the `gateway` package found in DIR instead (e.g. an older checkout made with
`git archive REV gateway | tar -x -C DIR`), to compare before and after.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time


def timed(cmd: list[str], env: dict, cwd: str) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
                   env=env, cwd=cwd)
    return time.perf_counter() - start


def figures(samples: list[float]) -> str:
    return (f"min {min(samples) * 1000:6.0f} ms  median {statistics.median(samples) * 1000:6.0f}"
            f" ms  max {max(samples) * 1000:6.0f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="runs of each command")
    ap.add_argument("--src", help="a folder holding the gateway package to measure")
    args = ap.parse_args()
    env = dict(os.environ)
    src = os.path.abspath(args.src or os.path.join(os.path.dirname(__file__), ".."))
    env["PYTHONPATH"] = src
    commands = {"python -c pass": [sys.executable, "-c", "pass"],
                "portal-gateway --help": [sys.executable, "-m", "gateway.cli", "--help"],
                "portal-gateway threads list -h": [sys.executable, "-m", "gateway.cli",
                                                   "threads", "list", "-h"]}
    results = {}
    for _ in range(args.runs):  # interleaved, so a busy moment hits all alike
        for name, cmd in commands.items():
            results.setdefault(name, []).append(timed(cmd, env, src))
    peer = statistics.median(results["python -c pass"])
    for name, samples in results.items():
        print(f"{name:32} {figures(samples)}  ratio {statistics.median(samples) / peer:4.1f}")


if __name__ == "__main__":
    main()
