"""Shared fixtures: a real database (SQLite and PostgreSQL), a real gateway on port 0."""
from __future__ import annotations

import asyncio
import atexit
import hashlib
import os
import secrets
import shutil
import tempfile
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, event, text

from gateway.classification import Classifier
from gateway.classification.learned import DEFAULT_PATH
from gateway.config import load_config
from gateway.crypto import write_key_file
from gateway.db import make_engine, upgrade as db_upgrade
from gateway.services import Services

ROOT = Path(__file__).resolve().parents[1]
PG_URL = os.environ.get("PORTAL_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI") == "true"


def _pg_engine(url: str):
    return create_engine("postgresql+psycopg://" + url.split("://", 1)[1])


def _files_digest(rules_dir, model_path) -> str:
    """What a load reads: every file of the rules directory and the model file, by content."""
    digest = hashlib.sha256()
    paths = sorted(Path(rules_dir).iterdir()) if Path(rules_dir).is_dir() else []
    for path in paths + [Path(model_path or DEFAULT_PATH)]:
        if path.is_file():
            digest.update(str(path).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


_LOADED: dict = {}
_load_from_files = Classifier.load.__func__


def _load_once(cls, rules_dir, model_path=None, use_model=None):
    """Classifier.load for the test process, read from the files only the first time their
    content is seen: every Services.create (each test's gateway) would otherwise compile the
    same few thousand rule patterns and read the same model again (about a second each).
    Each call still gets its own Classifier (a test may set its .model); rules, settings and
    the model are immutable; a load that fails is never kept, so it fails every time."""
    key = (str(rules_dir), str(model_path), use_model, _files_digest(rules_dir, model_path))
    if key not in _LOADED:
        _LOADED[key] = _load_from_files(cls, rules_dir, model_path, use_model)
    c = _LOADED[key]
    return cls(c.rules, c.settings, c.model, c.markers, c.danger)


Classifier.load = classmethod(_load_once)


@pytest.fixture(scope="session")
def pg_available() -> bool:
    try:
        engine = _pg_engine(PG_URL)
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        engine.dispose()
        return True
    except Exception as e:
        if IN_CI:
            pytest.fail(f"PostgreSQL is required in CI and is not reachable: {e}")
        return False


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path, pg_available):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'db' / 'gateway.sqlite3'}"
        return
    if not pg_available:
        pytest.skip("PostgreSQL not reachable (it is required with CI=true)")
    schema = "t_" + secrets.token_hex(6)
    admin = _pg_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f"create schema {schema}"))
    sep = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(text(f"drop schema {schema} cascade"))
    admin.dispose()


CONFIG = """
[gateway]
domain = "portal.example.org"
data_dir = "{data}"
rules_dir = "{root}/rules"
templates_dir = "{root}/templates"
[database]
url = "{db}"
[smtp]
inbound_port = 0
submission_port = 0
max_message_bytes = {max_bytes}
[http]
port = 0
ops_port = 0
[delivery]
poll_seconds = 0.05
[routing.categories]
appointment = ["frontdesk@practice.example.org"]
medical_question = ["nurses@practice.example.org"]
results = ["nurses@practice.example.org"]
billing = ["billing@practice.example.org"]
surgery = ["surgery@practice.example.org"]
demographics = ["frontdesk@practice.example.org"]
emergency = ["nurses@practice.example.org"]
[staff]
domains = ["practice.example.org"]
"""


def write_config(tmp_path: Path, db: str, max_bytes: int = 1024 * 1024) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(CONFIG.format(data=tmp_path / "var", root=ROOT, db=db,
                                  max_bytes=max_bytes))
    key_file = tmp_path / "portal-gateway.key"  # the default place (beside the data dir)
    if not key_file.exists():  # made on start for SQLite; PostgreSQL needs it given
        write_key_file(key_file)
    return path


def migrate(url: str) -> None:
    """What `portal-gateway db upgrade` does; PostgreSQL is never migrated implicitly.

    An empty database gets what the migrations made of the first empty database of its
    kind in this test process (they are deterministic): SQLite a copy of that file,
    PostgreSQL the very statements alembic sent then, replayed in this schema.  A database
    that holds anything is migrated by alembic itself."""
    if url.startswith("sqlite"):
        path = Path(url.split("///", 1)[1])
        if not path.exists() or path.stat().st_size == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(_sqlite_template(), path)
            return
    elif _pg_schema_is_empty(url):
        _replay(url, _pg_statements(url))
        return
    _migrate_with_alembic(url)


def _migrate_with_alembic(url: str, record: list | None = None) -> None:
    engine = make_engine(url)
    if record is not None:
        @event.listens_for(engine, "before_cursor_execute")
        def _sent(conn, cursor, statement, parameters, context, executemany):
            if not statement.lstrip().upper().startswith(("SELECT", "SHOW")):
                record.append((statement, parameters, executemany))
    db_upgrade(engine)
    engine.dispose()


_TEMPLATE: dict = {}


def _sqlite_template() -> Path:
    if "sqlite" not in _TEMPLATE:
        folder = Path(tempfile.mkdtemp(prefix="portal-test-template-"))
        atexit.register(shutil.rmtree, folder, True)
        _migrate_with_alembic(f"sqlite:///{folder / 'template.sqlite3'}")
        _TEMPLATE["sqlite"] = folder / "template.sqlite3"
    return _TEMPLATE["sqlite"]


def _pg_statements(url: str) -> list:
    """What alembic sends to migrate an empty schema (recorded on the first one)."""
    if "postgresql" not in _TEMPLATE:
        record: list = []
        _migrate_with_alembic(url, record)
        _TEMPLATE["postgresql"] = record
        return []  # this schema is migrated already
    return _TEMPLATE["postgresql"]


def _pg_schema_is_empty(url: str) -> bool:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return not conn.execute(text(
                "select count(*) from information_schema.tables "
                "where table_schema = current_schema()")).scalar()
    finally:
        engine.dispose()


def _replay(url: str, statements: list) -> None:
    if not statements:
        return
    engine = make_engine(url)
    try:
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            for statement, parameters, many in statements:
                (cursor.executemany if many else cursor.execute)(statement, parameters)
            raw.commit()
        finally:
            raw.close()
    finally:
        engine.dispose()


@pytest.fixture
def config(tmp_path, db_url):
    migrate(db_url)
    return load_config(write_config(tmp_path, db_url))


@pytest.fixture
def services(config):
    s = Services.create(config)
    yield s
    s.close()


@pytest.fixture
async def gateway(services):
    from gateway.app import Gateway
    gw = Gateway(services, inbound_port=0)
    await gw.start()
    yield gw
    await gw.stop(deadline=5)


def maildir_files(root: Path, address: str) -> list[Path]:
    folder = root / address.lower() / "new"
    return sorted(folder.iterdir()) if folder.exists() else []


async def wait_for_mail(root: Path, address: str, count: int = 1,
                        timeout: float = 10.0) -> list[Path]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        files = maildir_files(root, address)
        if len(files) >= count:
            return files
        await asyncio.sleep(0.05)
    raise AssertionError(f"expected {count} mail(s) for {address}, "
                         f"found {len(maildir_files(root, address))}")
