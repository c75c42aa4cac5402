"""The portal-gateway command as ops run it: a real process, a real config file."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, write_config
from tests.ports import free_ports

CLI = str(Path(sys.executable).parent / "portal-gateway")
EMAIL_DATA = Path(__import__("test.test_email", fromlist=["x"]).__file__).parent / "data"


def run(config: Path, *args, check=True, cwd=None):
    proc = subprocess.run([CLI, "--config", str(config), *args],
                          capture_output=True, text=True, cwd=cwd or ROOT, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} exited {proc.returncode}: {proc.stderr}")
    return proc


@pytest.fixture
def cfg_path(tmp_path, db_url):
    path = write_config(tmp_path, db_url)
    run(path, "db", "upgrade")
    return path


def test_patients_import_activate_suspend_list(cfg_path, tmp_path):
    roster = tmp_path / "roster.csv"
    roster.write_text("account_number,first_name,last_name,email,state\n"
                      "1001,Ana,Lopez,ana@example.com,CA\n1002,Bo,Bad,nope,CA\n"
                      "1003,Nev,Ada,nev@example.com,NV\n")
    proc = run(cfg_path, "patients", "import", str(roster), check=False)
    assert proc.returncode == 1
    assert f"{roster}:3: invalid email address" in proc.stderr
    assert "2 added" in proc.stdout
    run(cfg_path, "patients", "activate", "1001")
    refused = run(cfg_path, "patients", "activate", "1003", check=False)
    assert refused.returncode == 1 and "NV" in refused.stderr
    rows = [json.loads(line) for line in
            run(cfg_path, "patients", "list", "--json").stdout.splitlines()]
    assert {r["account_number"]: r["status"] for r in rows} == {"1001": "active",
                                                               "1003": "roster"}
    run(cfg_path, "patients", "suspend", "1001", "--reason", "abusive messages")
    run(cfg_path, "patients", "reinstate", "1001")
    table = run(cfg_path, "patients", "list").stdout
    assert "ACCOUNT_NUMBER" in table and "1001" in table and "active" in table
    missing = run(cfg_path, "patients", "activate", "9999", check=False)
    assert missing.returncode == 1 and "no patient" in missing.stderr


def test_check_config_names_file_and_field(tmp_path):
    bad = tmp_path / "config.toml"
    bad.write_text('[smtp]\ninbound_port = "twenty-five"\n')
    proc = run(bad, "check-config", check=False)
    assert proc.returncode != 0
    assert str(bad) in proc.stderr and "[smtp] inbound_port" in proc.stderr
    bad.write_text('[smtp]\nbogus_key = 1\n')
    proc = run(bad, "check-config", check=False)
    assert "[smtp] bogus_key: unknown key" in proc.stderr


@pytest.mark.parametrize("value", ["0", "-5", "1e9", '"soon"'])
def test_check_config_refuses_a_bad_urgent_clock(tmp_path, value):
    bad = tmp_path / "config.toml"
    bad.write_text(f"[policy]\nurgent_reply_minutes = {value}\n")
    proc = run(bad, "check-config", check=False)
    assert proc.returncode != 0
    assert str(bad) in proc.stderr and "[policy] urgent_reply_minutes" in proc.stderr


def test_check_config_refuses_a_bad_proxy_notification_mapping(tmp_path):
    bad = tmp_path / "config.toml"
    bad.write_text('[notifications]\nkinds = ["statement"]\nconfidential_kinds = ["x"]\n'
                   '[notifications.categories]\nstatement = "gossip"\nnope = "billing"\n')
    proc = run(bad, "check-config", check=False)
    assert proc.returncode != 0
    assert "[notifications.categories] statement: unknown category 'gossip'" in proc.stderr
    assert "[notifications.categories] nope: not one of [notifications] kinds" in proc.stderr
    assert "[notifications] confidential_kinds: 'x'" in proc.stderr


def test_example_config_passes_check_config(tmp_path):
    cfg = tmp_path / "config.toml"
    text = (ROOT / "config.example.toml").read_text()
    text = text.replace('rules_dir = "rules"', f'rules_dir = "{ROOT}/rules"')
    text = text.replace('templates_dir = "templates"', f'templates_dir = "{ROOT}/templates"')
    cfg.write_text(text)
    proc = run(cfg, "check-config", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_inspect_json_on_pythons_email_test_messages(tmp_path):
    files = sorted(str(p) for p in EMAIL_DATA.iterdir() if p.is_file())
    assert len(files) > 30
    broken = tmp_path / "missing.eml"
    proc = run(tmp_path / "absent.toml", "inspect", "--json", *files, str(broken),
               check=False, cwd=tmp_path)
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(rows) == len(files) + 1
    assert rows[-1]["file"] == str(broken) and "error" in rows[-1]
    for row in rows[:-1]:
        assert "error" not in row, row
        assert set(row) >= {"file", "category", "urgent", "rules", "attachments", "text"}
    assert proc.returncode == 1  # one file could not be read




def test_serve_end_to_end_from_the_readme(tmp_path):
    """The newcomer's story: import, activate, mail in, read the Maildir."""
    import smtplib
    import time
    from tests.helpers import patient_mail
    cfg = tmp_path / "config.toml"
    port, submission, http, ops = free_ports(4)
    text = (ROOT / "config.example.toml").read_text()
    text = text.replace("inbound_port = 2525", f"inbound_port = {port}")
    text = text.replace("submission_port = 2587", f"submission_port = {submission}")
    text = text.replace("port = 8025", f"port = {http}")
    text = text.replace("ops_port = 8026", f"ops_port = {ops}")
    text = text.replace('rules_dir = "rules"', f'rules_dir = "{ROOT}/rules"')
    text = text.replace('templates_dir = "templates"', f'templates_dir = "{ROOT}/templates"')
    cfg.write_text(text)
    roster = tmp_path / "roster.csv"
    roster.write_text("account_number,first_name,last_name,email,state\n"
                      "1001,Ana,Lopez,ana@example.com,CA\n")
    run(cfg, "patients", "import", str(roster))
    run(cfg, "patients", "activate", "1001")
    server = subprocess.Popen([CLI, "--config", str(cfg),
                               "serve"], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(100):
            try:
                client = smtplib.SMTP("127.0.0.1", port, timeout=10)
                break
            except OSError:
                time.sleep(0.1)
        with client:
            client.send_message(patient_mail(), "ana@example.com",
                                ["portal@portal.example.org"])
        maildir = tmp_path / "var" / "maildir"
        for _ in range(100):
            staff = list((maildir / "frontdesk@practice.example.org" / "new").glob("*"))
            ack = list((maildir / "ana@example.com" / "new").glob("*"))
            if staff and ack:
                break
            time.sleep(0.1)
        assert len(staff) == 1 and len(ack) == 1
    finally:
        server.terminate()
        out, err = server.communicate(timeout=30)
    assert server.returncode == 0, err
    for line in err.splitlines():  # every log line is JSON and names no patient
        entry = json.loads(line)
        assert "ana@example.com" not in line and "Lopez" not in line, entry


def test_a_broken_rules_file_stops_serve_and_check_config_but_not_the_roster(tmp_path):
    """Commands that never classify do not load the rules (nor wait for them); serve and
    check-config still load them at once and name the broken file."""
    import shutil
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    (rules / "zz-broken.toml").write_text("[[rule]\nid = ")
    cfg = write_config(tmp_path, f"sqlite:///{tmp_path / 'var' / 'gateway.sqlite3'}")
    cfg.write_text(cfg.read_text().replace(f'rules_dir = "{ROOT}/rules"',
                                           f'rules_dir = "{rules}"'))
    assert run(cfg, "patients", "list").stdout.strip() == "(none)"
    served = run(cfg, "serve", check=False)
    assert served.returncode == 1
    assert "cannot start: RuleError" in served.stderr and "zz-broken.toml" in served.stderr
    checked = run(cfg, "check-config", check=False)
    assert checked.returncode != 0 and "zz-broken.toml" in checked.stderr


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_serve_refuses_outdated_postgresql_schema(tmp_path, db_url):
    cfg = write_config(tmp_path, db_url)
    proc = run(cfg, "serve", check=False)
    assert proc.returncode == 3
    assert "portal-gateway db upgrade" in proc.stderr
    run(cfg, "db", "upgrade")
    assert "at revision" in run(cfg, "db", "upgrade").stdout


def test_example_config_names_every_key():
    """Ops learn the keys from config.example.toml: each one must be there."""
    import dataclasses
    import re
    from gateway.config import SECTIONS, ImapAccount
    text = (ROOT / "config.example.toml").read_text()
    sections = dict(SECTIONS, **{"imap.accounts": ImapAccount})
    missing = [f"[{name}] {f.name}" for name, cls in sections.items()
               for f in dataclasses.fields(cls)
               if not re.search(rf"^#?\s*({f.name}\s*=|\[+{name}\.{f.name}\]+)", text, re.M)]
    assert missing == []
