"""A guard against regular expressions that backtrack super-linearly (ReDoS).

Every pattern that runs on message content (the content path's own patterns and the rule
files' ``patterns``) must scan adversarial inputs of tens of kilobytes quickly: inputs built
from the pattern's own words and from the characters patterns like to repeat (spaces,
separators, ``url(``, ``data:``, ``=``...), each repeated to the wanted size and ended by a
character that makes the match fail late.  A linear pattern scans such an input in
milliseconds; a quadratic or cubic one takes minutes.

Python cannot interrupt a running regular expression, so `vet` runs the patterns in a
child process (``python -m gateway.classification.redos``) and kills it when one pattern
takes longer than the bound; that pattern is reported and the rest are checked in a fresh
child.  Used by ``check-config`` (rule patterns) and by the test suite (every pattern).
"""
from __future__ import annotations

import json
import os
import re
import selectors
import subprocess
import sys
import tomllib
from pathlib import Path

PIECES = (" ", "a", "a ", "aa", "0", "-", "--", "- ", "/", ".", "'", "\t", "\n", "\r\n",
          "\n\n", "=", ":", ";", ",", "<", ">", "<<", "(", ")", '"', "\\", "url(", "url( ",
          "data:", "data:;a=", "data:a/b;", "begin 644 ", "=ybegin ", "<br ", "<script ",
          "<style>", "boundary=", "boundary=a", "a=", "> ", "-- \n", "On x wrote:\n",
          "\u00a0", "\u2028", "A" * 40 + " ")
_WORDS = re.compile(r"[A-Za-z]{2,}")
BREAK = "\x00!\u2603"


FILLERS = (" ", "a", "\t", "0", "-", "\n", "=")


def literals(source: str, flags: int = 0) -> list[str]:
    """Runs of literal characters in a pattern (``url\\(`` gives ``url(``), longest first."""
    try:
        tree = re._parser.parse(source, flags)
    except Exception:
        return []
    runs: list[str] = []

    def walk(items) -> None:
        run = ""
        for op, arg in items:
            if op is re._constants.LITERAL:
                run += chr(arg)
                continue
            if run:
                runs.append(run)
            run = ""
            for sub in arg if isinstance(arg, (list, tuple)) else ():
                if isinstance(sub, re._parser.SubPattern):
                    walk(sub)
                elif isinstance(sub, (list, tuple)):
                    for item in sub:
                        if isinstance(item, re._parser.SubPattern):
                            walk(item)
        if run:
            runs.append(run)
    walk(tree)
    return sorted(dict.fromkeys(runs), key=len, reverse=True)[:10]


def adversarial_inputs(source: str, size: int, flags: int = 0) -> list[str]:
    """Inputs of about `size` characters meant to make a backtracking pattern slow: short
    pieces repeated, and each of the pattern's literals followed by a long filler run."""
    words = [w for w in _WORDS.findall(source) if w.lower() not in ("xa", "xff")][:8]
    lits = literals(source, flags)
    pieces = list(PIECES) + [w + " " for w in words] + words + lits
    if len(words) > 1:
        pieces.append(" ".join(words[:-1]) + " ")
        pieces += [f"{a} {b} " for a, b in zip(words, words[1:])]
    out = [piece * max(1, size // len(piece)) + BREAK for piece in dict.fromkeys(pieces)]
    for prefix in lits[:6] + ["url(", "data:"]:
        out += [prefix + filler * (size // 2) + BREAK for filler in FILLERS]
    return out


def run_one(pattern: str, flags: int, is_bytes: bool, size: int) -> None:
    """Scan every adversarial input with every way the gateway uses a pattern; a line
    after each input, so the time bound holds per input, not for their sum."""
    rx = re.compile(pattern.encode("latin-1") if is_bytes else pattern, flags)
    for text in adversarial_inputs(pattern, size, flags):
        data = text.encode("utf-8", "replace") if is_bytes else text
        for _ in rx.finditer(data):
            pass
        rx.match(data)
        print(".", flush=True)


def _child() -> None:
    print("ready", flush=True)  # started and imported: the time bounds begin now
    job = json.load(sys.stdin)
    for pattern, flags, is_bytes in job["patterns"]:
        run_one(pattern, flags, is_bytes, job["size"])
        print("ok", flush=True)


STARTUP_SECONDS = 60.0


def vet(patterns: list[tuple], size: int = 20_000, seconds: float = 1.0) -> list[int]:
    """Indexes of the patterns (source, flags, is_bytes) that took longer than `seconds`
    on any one adversarial input of about `size` characters."""
    slow, start = [], 0
    while start < len(patterns):
        done = _vet_batch(patterns[start:], size, seconds)
        start += done
        if start < len(patterns):
            slow.append(start)  # the one that ran out of time
            start += 1
    return slow


def _vet_batch(patterns: list[tuple], size: int, seconds: float) -> int:
    """How many patterns passed, in order, before one took too long (or all did)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, (
        str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH")))))
    proc = subprocess.Popen([sys.executable, "-m", "gateway.classification.redos"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    proc.stdin.write(json.dumps({"patterns": patterns, "size": size}).encode())
    proc.stdin.close()
    done = 0
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        # The child's start-up (an interpreter and its imports: seconds on a busy
        # machine) is not any pattern's time: the bound starts once it says "ready".
        if sel.select(STARTUP_SECONDS) and proc.stdout.readline().strip() == b"ready":
            while done < len(patterns) and sel.select(seconds):
                line = proc.stdout.readline()
                if not line:
                    break
                if line.strip() == b"ok":
                    done += 1
    proc.kill()
    proc.wait()
    return done


def rule_patterns(rules_dir: Path) -> list[tuple[str, str, str]]:
    """(file, rule id, pattern) for every ops-written regular expression in rules/ (the
    category rules and the confidential markers)."""
    found = []
    for path in sorted(Path(rules_dir).glob("*.toml")):
        with path.open("rb") as fh:
            data = tomllib.load(fh)
        for rule in data.get("rule", []) + data.get("marker", []):
            for key in ("patterns", "requires_patterns"):
                for pattern in rule.get(key, []) or []:
                    found.append((str(path), str(rule.get("id")), pattern))
    return found


def check_rule_patterns(rules_dir: Path, seconds: float = 1.0) -> list[str]:
    """Problems, naming file and rule, for rule patterns that backtrack super-linearly."""
    found = rule_patterns(rules_dir)
    slow = vet([(p, 0, False) for _, _, p in found], seconds=seconds)
    return [f"{found[i][0]}: rule {found[i][1]}: pattern {found[i][2]!r} backtracks "
            "super-linearly (too slow on adversarial text); rewrite it" for i in slow]


if __name__ == "__main__":
    _child()
