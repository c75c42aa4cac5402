"""Group commit: the decisions of concurrent sessions are written in one transaction.

A caller hands over a job, ``job(session) -> result``, and blocks until its rows are
committed (or its job failed).  One committer thread takes every job that is ready at that
moment and runs them in one transaction, each inside a savepoint of its own: a job that
raises is rolled back to its savepoint and its caller gets the exception, the others go on.
One commit (on SQLite in WAL mode with ``synchronous=FULL``, one fsync) then makes all of
them durable, and only then does each caller get its result: a ``250`` is still said only
after the message's own rows are on disk.  When that shared commit fails, the jobs are run
again one by one, each in a transaction of its own, so one message's trouble never fails
another.  A job must therefore build everything it writes from scratch each time it runs.

Only one thread of the process writes at a time, so sessions no longer queue on SQLite's
write lock (whose busy handler sleeps in steps of up to 100 ms); the content work happens
before, in the sessions' own threads.
"""
from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections import deque
from concurrent.futures import Future
from typing import Callable

log = logging.getLogger("gateway.commit")

MAX_BATCH = 64  # jobs per shared transaction


class GroupCommit:
    def __init__(self, transaction: Callable, committed: Callable[[], None],
                 gate: Callable = contextlib.nullcontext):
        self._transaction = transaction  # () -> context manager yielding a session
        self._committed = committed  # called after every successful commit
        self._gate = gate  # () -> context manager held around each transaction (db.WriteGate)
        self.batches = 0  # commits made, for tests and the benchmark
        self.jobs = 0
        self._fresh()

    def _fresh(self) -> None:
        self._jobs: deque[tuple[Callable, Future, bool]] = deque()
        self._ready = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closing = False
        self._pid = os.getpid()

    def run(self, job: Callable, notify: bool = True):
        """Run JOB(session) in the next group commit; its result once durable (blocks).
        NOTIFY: call `committed` after the commit (the job may have queued mail)."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("a group-commit job must use the session it is given")
        if self._pid != os.getpid():  # a forked child: the parent's thread is not here
            self._fresh()
        future: Future = Future()
        with self._ready:
            self._jobs.append((job, future, notify))
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="group-commit",
                                                daemon=True)
                self._thread.start()
            self._ready.notify()
        return future.result()

    def close(self, timeout: float = 10.0) -> None:
        """Finish what is queued and stop the thread (like disposing of an engine, this is
        no end: a later job starts a new thread, e.g. in a worker forked after close)."""
        with self._ready:
            self._closing = True
            self._ready.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
        with self._ready:
            self._closing = False

    def _loop(self) -> None:
        while True:
            with self._ready:
                while not self._jobs and not self._closing:
                    self._ready.wait()
                if not self._jobs:
                    self._thread = None  # under the lock: the next job starts a new one
                    return
                batch = [self._jobs.popleft()
                         for _ in range(min(MAX_BATCH, len(self._jobs)))]
            if len(batch) == 1:
                self._alone(*batch[0])
            else:
                self._together(batch)

    def _alone(self, job: Callable, future: Future, notify: bool) -> None:
        try:
            with self._gate(), self._transaction() as session:
                result = job(session)
        except BaseException as error:
            future.set_exception(error)
            return
        self._done(1, notify)
        future.set_result(result)

    def _together(self, batch: list[tuple[Callable, Future, bool]]) -> None:
        outcomes = []
        try:
            with self._gate(), self._transaction() as session:
                for job, future, _ in batch:
                    outcomes.append((future, *_in_savepoint(session, job)))
        except Exception as error:  # the shared commit failed: each on its own
            log.warning("group commit failed, committing one by one",
                        extra={"jobs": len(batch), "error": type(error).__name__})
            for entry in batch:
                self._alone(*entry)
            return
        self._done(len(batch), any(notify for _, _, notify in batch))
        for future, ok, value in outcomes:
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    def _done(self, jobs: int, notify: bool) -> None:
        self.batches += 1
        self.jobs += jobs
        if not notify:
            return
        try:
            self._committed()
        except Exception:
            log.exception("commit listener failed")


def _in_savepoint(session, job: Callable) -> tuple[bool, object]:
    """(True, result) or (False, exception); a failed job leaves nothing behind.  An
    error rolling back the savepoint itself propagates (the whole batch is retried)."""
    savepoint = session.begin_nested()
    try:
        result = job(session)
        savepoint.commit()
    except Exception as error:
        if savepoint.is_active:
            savepoint.rollback()
        return False, error
    return True, result
