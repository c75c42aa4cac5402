"""Files the gateway writes are the owner's only (0600, directories 0700), whatever the
umask of whoever started it: the commands and `serve` set their own."""
from __future__ import annotations

import os
import signal
import smtplib
import subprocess
import time
from pathlib import Path

from tests.conftest import ROOT
from tests.helpers import patient_mail
from tests.ports import free_ports
from tests.test_ops import CLI


def loose_modes(root: Path) -> list[str]:
    found = []
    for path in [root, *root.rglob("*")]:
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            found.append(f"{path.relative_to(root.parent)} {oct(mode)}")
    return found


def test_commands_and_serve_write_private_files(tmp_path):
    smtp, submission, http, ops = free_ports(4)
    text = (ROOT / "config.example.toml").read_text()
    for old, new in (("inbound_port = 2525", f"inbound_port = {smtp}"),
                     ("submission_port = 2587", f"submission_port = {submission}"),
                     ("port = 8025", f"port = {http}"),
                     ("ops_port = 8026", f"ops_port = {ops}"),
                     ('rules_dir = "rules"', f'rules_dir = "{ROOT}/rules"'),
                     ('templates_dir = "templates"', f'templates_dir = "{ROOT}/templates"'),
                     ("poll_seconds = 1.0", "poll_seconds = 0.1")):
        assert old in text, old
        text = text.replace(old, new)
    config = tmp_path / "config.toml"
    config.write_text(text)
    (tmp_path / "roster.csv").write_text("account_number,first_name,last_name,email,state\n"
                                         "1001,Ana,Lopez,ana@example.com,CA\n")
    loose = lambda: os.umask(0o022)  # noqa: E731  what a shell usually has
    for argv in (["patients", "import", str(tmp_path / "roster.csv")],
                 ["patients", "activate", "1001"]):
        subprocess.run([CLI, "--config", str(config), *argv], check=True, cwd=tmp_path,
                       preexec_fn=loose, capture_output=True, timeout=60)
    proc = subprocess.Popen([CLI, "--config", str(config), "serve"], cwd=tmp_path,
                            preexec_fn=loose, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stderr:
            if '"listening"' in line:
                break
        with smtplib.SMTP("127.0.0.1", smtp, timeout=20) as client:
            client.send_message(patient_mail(), "ana@example.com",
                                ["portal@portal.example.org"])
        deadline = time.monotonic() + 20
        box = tmp_path / "var" / "maildir" / "ana@example.com" / "new"
        while time.monotonic() < deadline and not (box.exists() and any(box.iterdir())):
            time.sleep(0.1)
        assert box.exists() and any(box.iterdir())
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    key = tmp_path / "portal-gateway.key"
    assert (key.stat().st_mode & 0o777) == 0o600
    assert (tmp_path / "var" / "gateway.sqlite3").exists()
    assert loose_modes(tmp_path / "var") == []
