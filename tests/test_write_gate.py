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
