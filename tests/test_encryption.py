"""Encryption at rest: after a realistic run over SMTP, a copy of the database (the SQLite
file with its WAL, or pg_dump of the schema) holds no patient's name, address, words or
file names; values carry their key id; rotation re-seals them while they stay readable."""
from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
from urllib.parse import unquote

import pytest
from sqlalchemy import select, text

from gateway import crypto
from gateway.cli import main as cli
from gateway.models import Message, Outbox, Patient
from tests.helpers import add_patient
from tests.test_privacy import (ADDRESS, BODY, FILE, FIRST, LAST, STAFF_TEXT, SUBJECT,
                                run_story)

STORED_CANARIES = [FIRST, LAST, ADDRESS, SUBJECT, BODY, FILE, STAFF_TEXT,
                   "zqxinvitee@example.com", "zqxstranger"]


def database_dump(services, db_url: str) -> bytes:
    if db_url.startswith("sqlite"):
        path = db_url.split("///", 1)[1]
        return b"".join(open(p, "rb").read() for p in (path, path + "-wal", path + "-shm")
                        if os.path.exists(p))
    if shutil.which("pg_dump") is None:
        pytest.fail("pg_dump is needed to dump the PostgreSQL schema")
    schema = unquote(re.search(r"search_path%3D(\w+)", db_url).group(1))
    base = db_url.split("?", 1)[0]
    return subprocess.run(["pg_dump", "--no-owner", "-n", schema, base], check=True,
                          capture_output=True, timeout=60).stdout


async def test_database_dump_holds_no_phi(services, gateway, db_url):
    await run_story(services, gateway)
    with services.factory() as session:  # the run stored what the canaries are in ...
        assert session.scalar(select(Patient.first_name).where(
            Patient.email_index.is_not(None))) == FIRST
        assert any(BODY in (m or "") for m in session.scalars(select(Message.body)))
        assert any(FILE.encode() in r for r in session.scalars(select(Outbox.raw)))
    dump = database_dump(services, db_url).lower()
    assert b"create table" in dump or b"sqlite format 3" in dump
    assert crypto.PREFIX.encode() in dump  # ... and the dump holds it sealed
    for canary in STORED_CANARIES:
        for form in (canary.lower().encode(), canary.lower().encode("utf-16-le")):
            assert form not in dump, canary


def test_each_value_names_its_key_and_its_column(services):
    pid = add_patient(services, first="Ana")
    with services.factory() as session:
        stored = session.execute(text("select first_name, last_name from patients")).one()
        assert all(v.startswith(f"enc1:{crypto.ring().current}:") for v in stored)
    with services.transaction() as session:  # an attacker moves a value to another column
        session.execute(text("update patients set last_name = first_name"))
    with services.factory() as session, pytest.raises(crypto.DecryptError):
        session.get(Patient, pid)


def test_hostile_stored_values_are_refused_not_returned(services):
    pid = add_patient(services)
    good = crypto.encrypt_text("Ana", "patients.first_name")
    flipped = good[:-6] + ("A" if good[-6] != "A" else "B") + good[-5:]
    for value in (flipped, "enc1:deadbeef:" + good.split(":", 2)[2], "enc1:", "enc1:zz:%%%"):
        with services.transaction() as session:
            session.execute(text("update patients set first_name = :v"), {"v": value})
        with services.factory() as session, pytest.raises(Exception) as info:
            session.get(Patient, pid)
        assert "Ana" not in str(info.value)


def test_rotate_reseals_everything_under_a_new_key(services, capsys):
    add_patient(services)
    add_patient(services, account="1002", email="bo@example.com", first="Bo")
    with services.transaction() as session:  # a row from before encryption existed
        session.execute(text("update patients set last_name = 'Plain' where "
                             "account_number = '1002'"))
    old = crypto.ring().current
    assert cli(["keys", "rotate", "--json", "--config", str(services.cfg.path)]) == 0
    out = capsys.readouterr().out
    new = crypto.ring().current
    assert new != old and f'"key_id": "{new}"' in out
    assert len(crypto.parse_keys(services.cfg.key_file.read_text(), "k")) == 2
    with services.factory() as session:
        rows = session.execute(text("select first_name, last_name, email from patients"))
        values = [v for row in rows for v in row]
        assert values and all(v.startswith(f"enc1:{new}:") for v in values)
        names = {(p.first_name, p.last_name) for p in session.scalars(select(Patient))}
    assert names == {("Ana", "Lopez"), ("Bo", "Plain")}
    crypto.install(crypto.Keyring(crypto.parse_keys(  # the old key alone reads nothing now
        services.cfg.key_file.read_text(), "k")[:1]))
    with services.factory() as session, pytest.raises(crypto.DecryptError):
        session.scalars(select(Patient)).all()


def test_address_lookups_use_the_blind_index(services):
    from gateway.patients import by_email
    add_patient(services, email="Ana@Example.com")
    with services.factory() as session:
        assert by_email(session, "ana@example.com").account_number == "1001"
        assert by_email(session, " ANA@example.COM ").account_number == "1001"
        assert by_email(session, "bo@example.com") is None
        index = session.execute(text("select email_index from patients")).scalar()
    assert re.fullmatch(r"[0-9a-f]{64}", index) and "ana" not in index




def test_embedded_default_creates_a_private_key_file(tmp_path):
    from gateway import keys
    from gateway.config import build_config
    cfg = build_config({"gateway": {"data_dir": str(tmp_path / "var")}}, tmp_path / "c.toml")
    ring = keys.load(cfg)
    path = tmp_path / "portal-gateway.key"
    assert path.exists() and (path.stat().st_mode & 0o777) == 0o600
    assert keys.load(cfg).current == ring.current  # made once, then read
    pg = build_config({"gateway": {"data_dir": str(tmp_path / "v2")},
                       "database": {"url": "postgresql://x@127.0.0.1/y"},
                       "security": {"key_file": "other.key"}}, tmp_path / "c.toml")
    with pytest.raises(keys.KeysUnavailable, match="same keys"):
        keys.load(pg)


def test_key_sources_are_checked(tmp_path):
    from gateway.config import ConfigError, build_config
    for value, problem in (("x!", "not base64"),
                           (base64.b64encode(b"short").decode(), "must be 32 bytes")):
        with pytest.raises(ConfigError, match=r"\[security\] keys: .*" + problem):
            build_config({"security": {"keys": value}}, tmp_path / "c.toml")
    two = ",".join(base64.b64encode(os.urandom(32)).decode() for _ in range(2))
    cfg = build_config({"security": {"keys": two}}, tmp_path / "c.toml")
    assert len(crypto.parse_keys(cfg.security.keys, "k")) == 2


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # SQLite: one writer at
def test_rotation_never_overwrites_what_the_gateway_wrote_meanwhile(services, monkeypatch):
    """(On SQLite a batch holds the write lock from its BEGIN, so no one writes between its
    read and its write; PostgreSQL lets the gateway in, and the compare-and-set holds.)"""
    from gateway import rotation
    pid = add_patient(services)
    crypto.append_key(services.cfg.key_file)
    crypto.install(crypto.Keyring(crypto.parse_keys(services.cfg.key_file.read_text(), "k")))
    real, calls = rotation._reseal, []

    def racing(col, value, current):  # the live gateway renames the patient mid-batch
        if col.name == "first_name" and not calls:
            calls.append(1)
            with services.transaction() as session:
                session.get(Patient, pid).first_name = "Anabel"
        return real(col, value, current)
    monkeypatch.setattr(rotation, "_reseal", racing)
    report = rotation.rotate(services)
    assert report.passes >= 2
    with services.factory() as session:
        assert session.get(Patient, pid).first_name == "Anabel"
        stored = session.execute(text("select first_name from patients")).scalar()
    assert stored.startswith(f"enc1:{crypto.ring().current}:")


def test_reload_takes_a_new_key_but_never_drops_one_in_use(services):
    from gateway import keys
    add_patient(services)
    old = crypto.ring().current
    path = services.cfg.key_file
    original = path.read_text()
    path.write_text(crypto.new_key_line() + "\n")  # a file without the key in use
    services.reload()
    assert crypto.ring().current == old
    path.write_text(original)
    new_id = crypto.append_key(path)
    services.reload()
    assert crypto.ring().current == new_id and old in crypto.ring().ids
    with pytest.raises(keys.KeysUnavailable):
        path.write_text("")
        keys.reload(services.cfg)
    with services.factory() as session:
        assert session.scalars(select(Patient)).one().first_name == "Ana"
