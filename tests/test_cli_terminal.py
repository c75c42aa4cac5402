"""The CLI in a terminal and in a pipe, as an operator meets it: help on every option,
--config everywhere, tables for people (local times, yes/no), no traceback when the reader
of a pipe goes away, every config problem at once."""
from __future__ import annotations

import argparse
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli import build_parser, subparsers
from tests.conftest import ROOT, write_config

CLI = str(Path(sys.executable).parent / "portal-gateway")


def run(*args, stdin: str | None = None, check: bool = True):
    proc = subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, cwd=ROOT,
                          input=stdin, timeout=120)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def leaf_commands():
    return [(child.prog, child) for _, child in subparsers(build_parser())
            if not any(isinstance(a, argparse._SubParsersAction) for a in child._actions)]


def test_every_option_and_argument_has_help_and_every_command_a_description():
    missing = []
    for prog, parser in [("portal-gateway", build_parser())] + leaf_commands():
        assert parser.description, f"{prog}: no description"
        for action in parser._actions:
            if not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)) \
                    and not action.help:
                missing.append(f"{prog} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, missing
    assert "SUB_CONFIG" not in build_parser().format_help()


@pytest.mark.parametrize("prog,parser", leaf_commands(), ids=lambda v: str(v))
def test_every_command_takes_config(prog, parser):
    options = {o for a in parser._actions for o in a.option_strings}
    assert "--config" in options, prog
    assert "--config PATH" in parser.format_help() and "SUB_CONFIG" not in parser.format_help()


def test_hash_password_takes_config_like_every_command(tmp_path):
    proc = run("hash-password", "--config", tmp_path / "nowhere.toml",
               stdin="correct horse battery staple\n")
    assert proc.stdout.startswith("$argon2id$")


@pytest.fixture
def cfg_path(tmp_path, db_url):
    path = write_config(tmp_path, db_url)
    run("--config", path, "db", "upgrade")
    return path


def big_roster(tmp_path: Path, n: int) -> Path:
    roster = tmp_path / "roster.csv"
    roster.write_text("account_number,first_name,last_name,email,state\n" + "".join(
        f"{1000 + i},Pat{i},Doe,pat{i}@example.com,CA\n" for i in range(n)))
    return roster


def wide_roster(tmp_path: Path, n: int) -> Path:
    """N patients with long (valid) account numbers, names and addresses: each row of
    `patients list` and of `audit list` is over 130 bytes."""
    roster = tmp_path / "roster.csv"
    roster.write_text("account_number,first_name,last_name,email,state\n" + "".join(
        f"{i:060d},Maximiliana{i},Featherstonehaugh-Cholmondeley,"
        f"maximiliana.featherstonehaugh{i}@example-family-practice.com,CA\n"
        for i in range(n)))
    return roster


def test_closed_pipe_gives_no_traceback(cfg_path, tmp_path):
    """`portal-gateway patients list | head -1` with output far larger than a pipe holds
    (64 KiB on Linux): each of the three outputs is over 130 KB."""
    run("--config", cfg_path, "patients", "import", wide_roster(tmp_path, 1000))
    for command in ("patients list", "audit list", "patients list --json"):
        proc = subprocess.run(["bash", "-c", f"set -o pipefail; {CLI} --config {cfg_path} "
                               f"{command} | head -1"], capture_output=True, text=True,
                              timeout=120)
        assert len(proc.stdout.splitlines()) == 1, command
        assert proc.stderr == "", (command, proc.stderr)
        assert proc.returncode == 141, command  # 128 + SIGPIPE, like any Unix tool


def test_tables_show_local_time_and_yes_no(services):
    from gateway import patients
    from gateway.models import Thread, utcnow
    with services.transaction() as session:
        patients.import_roster(session, "account_number,first_name,last_name,email,state\n"
                                        "1001,Ana,Lopez,ana@example.com,CA\n")
        patient = patients.by_account(session, "1001")
        session.add(Thread(public_id="t1", patient_id=patient.id, category="emergency",
                           urgent=True, team="nurses@practice.example.org", state="open",
                           due_at=utcnow().replace(microsecond=123456)))
    out = run("--config", services.cfg.path, "threads", "list").stdout
    row = next(line for line in out.splitlines() if line.startswith("t1"))
    assert re.search(r"\b\d{4}-\d\d-\d\d \d\d:\d\d P[SD]T\b", row), row  # Los Angeles
    assert " yes " in f"{row} " and "True" not in out and "123456" not in out
    as_json = run("--config", services.cfg.path, "threads", "list", "--json").stdout
    assert '"urgent": true' in as_json and re.search(r'"due": "[0-9T:.-]+Z"', as_json)


def test_terminal_gets_a_rich_table_and_a_progress_bar(cfg_path, tmp_path):
    roster = big_roster(tmp_path, 50)
    out, _ = in_terminal(CLI, "--config", cfg_path, "patients", "import", roster)
    assert "importing" in out and "50/50" in out
    out, _ = in_terminal(CLI, "--config", cfg_path, "patients", "list")
    assert "\x1b[" in out and "ACCOUNT_NUMBER" in out  # styled header
    piped = run("--config", cfg_path, "patients", "list").stdout
    assert "\x1b[" not in piped and piped.startswith("ACCOUNT_NUMBER")


def in_terminal(*cmd) -> tuple[str, int]:
    """Run CMD with stdout and stderr on a pseudo-terminal 100 columns wide."""
    main, child = pty.openpty()
    import fcntl
    import struct
    import termios
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
    env = dict(os.environ, TERM="xterm-256color", COLUMNS="100")
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen([str(c) for c in cmd], stdout=child, stderr=child,
                            stdin=subprocess.DEVNULL, cwd=ROOT, env=env)
    os.close(child)
    chunks = []
    while True:
        try:
            data = os.read(main, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(main)
    return b"".join(chunks).decode(errors="replace"), proc.wait(timeout=60)


def test_check_config_lists_every_problem_at_once(tmp_path):
    bad = tmp_path / "config.toml"
    bad.write_text(f'[gateway]\nrules_dir = "{ROOT}/rules"\ntemplates_dir = "{ROOT}/templates"\n'
                   '[smtp]\ninbound_port = "twenty-five"\nbogus = 1\n'
                   '[policy]\nauth_mode = "maybe"\nreply_within_hours = -1\n'
                   '[nonsense]\nx = 1\n')
    proc = run("--config", bad, "check-config", check=False)
    assert proc.returncode == 2
    for expected in ("[smtp] inbound_port: expected an integer", "[smtp] bogus: unknown key",
                     "[policy] auth_mode: must be", "[policy] reply_within_hours: must be",
                     "[nonsense]: unknown section"):
        assert f"{bad}: {expected}" in proc.stderr, (expected, proc.stderr)
    assert "5 problems" in proc.stderr
