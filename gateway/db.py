"""Engine, sessions and migrations.

SQLite runs in WAL mode with ``synchronous=FULL`` so that a committed transaction survives
a power cut; PostgreSQL is used as configured.  The embedded SQLite default migrates itself;
on PostgreSQL ``serve`` refuses an out-of-date schema (``portal-gateway db upgrade``).
"""
from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).parent / "migrations"


class DatabaseUnavailable(Exception):
    """The database cannot be reached or written."""


class SchemaOutOfDate(Exception):
    pass


def _sqlite_pragmas(dbapi_conn, _record):
    dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (see _sqlite_begin)
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def _sqlite_begin(conn):
    """Take SQLite's write lock at BEGIN: writers queue on busy_timeout instead of failing
    with a stale snapshot, and a read-then-update (the outbox claim) is atomic.  A reader
    (an engine with ``read_only`` set, see `reader`) takes a snapshot without the lock."""
    if conn.get_execution_options().get("read_only"):
        conn.exec_driver_sql("BEGIN DEFERRED")
    else:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 10})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


class WriteGate:
    """Gateway processes sharing one SQLite file (``[gateway] workers = N``) take turns
    at writing through an exclusive ``flock`` on ``<database>-gate`` held for a whole
    group-commit transaction.  Without it, a process that finds the write lock taken is
    left to SQLite's busy handler, which sleeps in steps of up to 100 ms and may lose the
    race again and again (p99 above one second at 10 sessions with two workers); a
    process waiting in ``flock`` is woken the moment the other one commits.  It is only a
    queue in front of SQLite's own locking, which still decides (other writers, such as
    the CLI, do not take the gate).  The file is opened once per process (a descriptor
    inherited over ``fork`` would share the lock with the parent) and never closed.

    The wait is bounded: a process that holds the gate and never lets go (stopped with
    SIGSTOP, hung) is waited for ``wait_seconds`` at most, then the transaction goes on
    without the gate and SQLite's own busy timeout decides, as it did before the gate.
    Waiting polls every millisecond or two (woken within ~2 ms of the other's commit)."""

    wait_seconds = 10.0

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()

    def _descriptor(self) -> int:
        with self._lock:
            if self._pid != os.getpid():
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                self._pid = os.getpid()
            return self._fd

    @contextmanager
    def held(self):
        fd = self._descriptor()
        got = self._acquire(fd)
        try:
            yield
        finally:
            if got:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def _acquire(self, fd: int) -> bool:
        deadline, delay = time.monotonic() + self.wait_seconds, 0.0005
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                pass
            if time.monotonic() >= deadline:
                logging.getLogger("gateway.db").warning(
                    "write gate busy for %.0f s: writing without it", self.wait_seconds)
                return False
            time.sleep(delay)
            delay = min(delay * 2, 0.002)


def write_gate(engine: Engine):
    """A context manager around one write transaction: `WriteGate.held` for a SQLite
    file, nothing otherwise (PostgreSQL locks rows, and queues waiters itself)."""
    path = engine.url.database if is_sqlite(engine) else None
    if not path or path == ":memory:" or path.startswith("file:"):
        return nullcontext
    return WriteGate(Path(path + "-gate")).held


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def reader(engine: Engine) -> sessionmaker[Session]:
    """Sessions that only read: on SQLite they never wait for (or hold) the write lock."""
    return sessionmaker(engine.execution_options(read_only=True), expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]):
    """One unit of work: commit on success, roll back on any error."""
    with factory() as session:
        with session.begin():
            yield session


def _alembic_config(engine: Engine) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def head_revision() -> str:
    return ScriptDirectory.from_config(_alembic_config(None)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine) -> None:
    command.upgrade(_alembic_config(engine), "head")


def ensure_schema(engine: Engine) -> None:
    """Migrate the embedded SQLite database; refuse an outdated PostgreSQL schema."""
    current = current_revision(engine)
    if current == head_revision():
        return
    script = ScriptDirectory.from_config(_alembic_config(None))
    if current is not None and current not in {r.revision for r in script.walk_revisions()}:
        raise SchemaOutOfDate(
            f"database schema is at {current}, newer than this gateway knows "
            f"({head_revision()}): run the newer gateway version, or restore a backup")
    if is_sqlite(engine):
        upgrade(engine)
        return
    raise SchemaOutOfDate(
        f"database schema is at {current_revision(engine) or 'nothing'}, the gateway needs "
        f"{head_revision()}: run 'portal-gateway db upgrade'")
