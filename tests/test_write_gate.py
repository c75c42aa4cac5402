"""Gateway processes sharing one SQLite file take turns at writing through the write gate
(gateway.db.WriteGate): a process waiting for the other is let in as soon as the other's
transaction ends, and a forked worker never shares its parent's turn."""
from __future__ import annotations

import os
import time

from sqlalchemy import create_engine

from gateway import db


def _sqlite(tmp_path):
    return create_engine(f"sqlite:///{tmp_path / 'gateway.sqlite3'}")


def test_a_forked_worker_waits_for_the_parents_turn_and_no_longer(tmp_path):
    held = db.write_gate(_sqlite(tmp_path))
    with held():  # the parent's descriptor is open before the fork, as in `serve`
        pass
    read, write = os.pipe()
    with held():
        pid = os.fork()
        if pid == 0:  # the worker: it must wait for the parent, not share its lock
            os.close(read)
            start = time.monotonic()
            with held():
                waited = time.monotonic() - start
            os.write(write, f"{waited:.3f}".encode())
            os._exit(0)
        os.close(write)
        time.sleep(0.5)
    waited = float(os.read(read, 100).decode())
    os.waitpid(pid, 0)
    assert 0.4 <= waited < 2.0
    assert (tmp_path / "gateway.sqlite3-gate").stat().st_mode & 0o777 == 0o600


def test_no_gate_without_a_sqlite_file(tmp_path):
    memory = db.write_gate(create_engine("sqlite://"))
    with memory():
        pass
    assert not list(tmp_path.iterdir())


def test_a_gate_held_for_good_is_given_up_after_the_wait_limit(tmp_path, monkeypatch):
    """A stopped or hung process holding the gate must not stall the others for ever:
    they write without it after wait_seconds (SQLite's own locking still decides)."""
    import fcntl
    engine = _sqlite(tmp_path)
    held = db.write_gate(engine)
    with held():
        pass
    path = tmp_path / "gateway.sqlite3-gate"
    ready, hold = os.pipe()
    pid = os.fork()
    if pid == 0:  # another process takes the gate and keeps it
        fd = os.open(path, os.O_RDWR)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(hold, b"x")
        time.sleep(30)
        os._exit(0)
    try:
        os.read(ready, 1)
        monkeypatch.setattr(db.WriteGate, "wait_seconds", 0.5)
        start = time.monotonic()
        with held():
            waited = time.monotonic() - start
        assert 0.4 <= waited < 3.0
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    start = time.monotonic()
    with held():  # the holder is gone: the gate is free again at once
        assert time.monotonic() - start < 0.5
