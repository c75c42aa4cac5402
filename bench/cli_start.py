"""How long a command that never classifies takes: `portal-gateway patients list` on a
fresh data dir (SQLite, schema made and key created by that run), next to `check-config`
(which loads and checks the rules and the model, the cost `patients list` should not pay).

Prints min/median/max of three runs of each, interleaved, and the ratio of medians:

    .venv/bin/python bench/cli_start.py [--runs 3] [--before DIR]

--before DIR also runs `patients list` with the `gateway` package found in DIR (e.g. an
older checkout made with `git archive REV gateway | tar -x -C DIR`), in the same run, to
compare before and after.  Rules and templates come from this checkout in every case.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cli_help import figures  # noqa: E402  (one format for both start-up benches)

CONFIG = """\
[gateway]
domain = "portal.example.org"
data_dir = "{data}"
rules_dir = "{here}/rules"
templates_dir = "{here}/templates"
"""


def timed(src: str, argv: list[str]) -> float:
    """One run with a fresh data dir (its config written beside it)."""
    tmp = tempfile.mkdtemp(prefix="bench-cli-start-")
    try:
        config = os.path.join(tmp, "config.toml")
        with open(config, "w") as f:
            f.write(CONFIG.format(data=os.path.join(tmp, "var"), here=HERE))
        env = dict(os.environ, PYTHONPATH=src)
        cmd = [sys.executable, "-m", "gateway.cli", *argv, "--config", config]
        start = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       check=True, env=env, cwd=tmp)
        return time.perf_counter() - start
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="runs of each command")
    ap.add_argument("--before", metavar="DIR", help="a folder holding an older gateway package")
    args = ap.parse_args()
    commands = {"check-config (loads rules)": (HERE, ["check-config"]),
                "patients list": (HERE, ["patients", "list"])}
    if args.before:
        commands["patients list (before)"] = (os.path.abspath(args.before),
                                              ["patients", "list"])
    results: dict[str, list[float]] = {}
    for _ in range(args.runs):  # interleaved, so a busy moment hits all alike
        for name, (src, argv) in commands.items():
            results.setdefault(name, []).append(timed(src, argv))
    peer = statistics.median(results["check-config (loads rules)"])
    for name, samples in results.items():
        print(f"{name:28} {figures(samples)}  ratio {statistics.median(samples) / peer:4.2f}")


if __name__ == "__main__":
    main()
