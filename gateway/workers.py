"""`serve` with ``[gateway] workers = N`` (N > 1): a parent process that runs N gateway
processes and looks after them.

* The parent reads the config, checks the database (schema; migrations on SQLite), loads
  rules, templates and keys once, makes sure the two SMTP ports are free (a second gateway
  on the same ports is refused as before: "cannot listen"), then forks N workers.  A fork
  starts in milliseconds and shares the loaded rules' memory; the parent itself holds no
  database connection, no listener and no event loop.
* Each worker binds both SMTP listeners with ``SO_REUSEPORT``; the kernel spreads new
  connections over them.  Every worker runs an outbox worker (claims keep each mail to one
  sender); worker 0 alone runs the HTTP and ops listeners, the deadline sweeper and the
  IMAP pollers.
* SIGTERM/SIGINT to the parent: every worker drains (gateway.app); the parent waits up to
  ``drain_seconds`` plus a margin, then kills what is left.  SIGHUP: the parent reloads
  rules and templates (so a worker started later has the new ones) and every worker does.
* A worker that exits on its own is logged (index, pid, exit status) and started again; one
  that keeps dying at start waits longer each time (up to `MAX_BACKOFF` seconds).
* A worker asks the kernel for SIGTERM (a drain) when the parent goes
  (``PR_SET_PDEATHSIG``).
"""
from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass
from typing import Callable

log = logging.getLogger("gateway.workers")

MAX_BACKOFF = 30.0
STABLE_SECONDS = 10.0  # a worker that ran this long died of something else than its start
DRAIN_MARGIN = 5.0  # seconds past drain_seconds before the parent kills a worker


@dataclass(frozen=True)
class Role:
    index: int
    inbound_port: int
    submission_port: int


def free_shared_port(host: str, port: int) -> int:
    """PORT (or any free port for 0) if nothing listens on it: a plain bind (without
    ``SO_REUSEPORT``) fails when another gateway's workers hold it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    """In a worker: SIGTERM (a drain) when the parent process goes."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Worker:
    def __init__(self, index: int):
        self.index = index
        self.pid: int | None = None
        self.started = 0.0
        self.failures = 0  # deaths in a row, each soon after its start
        self.restart_at: float | None = None

    def exited(self) -> int | None:
        """The exit code (minus the signal number) once the process has ended, else None."""
        if self.pid is None:
            return None
        pid, status = os.waitpid(self.pid, os.WNOHANG)
        return None if pid == 0 else os.waitstatus_to_exitcode(status)


class Supervisor:
    """RUN_WORKER(role) is one worker's whole life (its return value the exit code);
    RELOAD() re-reads rules and templates in the parent."""

    def __init__(self, cfg, run_worker: Callable[[Role], int], reload: Callable[[], None]):
        self.cfg = cfg
        self.run_worker, self.reload = run_worker, reload
        self.workers = [Worker(i) for i in range(cfg.gateway.workers)]
        self.ports = (0, 0)
        self.stopping = False
        self.hangup = False

    def _start(self, worker: Worker) -> None:
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            self._child(worker.index)  # never returns
        worker.pid, worker.started, worker.restart_at = pid, time.monotonic(), None
        log.info("worker started", extra={"worker": worker.index, "worker_pid": pid})

    def _child(self, index: int) -> None:
        code = 1
        try:
            # Until the worker's event loop sets its own handlers: SIGTERM ends it (it has
            # accepted nothing yet), a SIGHUP is no reason to die (the parent reloaded the
            # rules this worker was forked with).
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, signal.SIG_DFL)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            _die_with_parent()
            code = self.run_worker(Role(index, *self.ports))
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        except BaseException:
            log.exception("worker failed", extra={"worker": index})
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    def _on_exit(self, worker: Worker, code: int, now: float) -> None:
        """Log a worker that exited on its own, and plan its restart."""
        how = {"signal": signal.Signals(-code).name} if code < 0 else {"exit_code": code}
        worker.failures = 0 if now - worker.started >= STABLE_SECONDS else worker.failures + 1
        delay = min(MAX_BACKOFF, 0.5 * 2 ** worker.failures) if worker.failures else 0.0
        log.error("worker died, restarting", extra={"worker": worker.index,
                                                    "worker_pid": worker.pid, **how,
                                                    "restart_in_seconds": delay})
        worker.pid, worker.restart_at = None, now + delay

    def _tick(self) -> None:
        if self.hangup:
            self.hangup = False
            self.reload()
            self._signal_all(signal.SIGHUP)
        now = time.monotonic()
        for worker in self.workers:
            code = worker.exited()
            if code is not None:
                self._on_exit(worker, code, now)
            if worker.pid is None and worker.restart_at is not None \
                    and now >= worker.restart_at:
                self._start(worker)

    def _signal_all(self, sig: int) -> None:
        for worker in self.workers:
            if worker.pid is not None:
                try:
                    os.kill(worker.pid, sig)
                except ProcessLookupError:
                    pass  # ended a moment ago: the next look collects it

    def _drain(self) -> None:
        log.info("draining", extra={"workers": len(self.workers)})
        self._signal_all(signal.SIGTERM)
        end = time.monotonic() + self.cfg.gateway.drain_seconds + DRAIN_MARGIN
        waiting = [w for w in self.workers if w.pid is not None]
        while waiting and time.monotonic() < end:
            waiting = [w for w in waiting if w.exited() is None]
            time.sleep(0.05)
        for worker in waiting:
            log.error("worker did not drain in time, killed",
                      extra={"worker": worker.index, "worker_pid": worker.pid})
            os.kill(worker.pid, signal.SIGKILL)
            os.waitpid(worker.pid, 0)
        log.info("stopped")

    def _stop(self, *_):
        self.stopping = True

    def _hup(self, *_):
        self.hangup = True

    def run(self) -> int:
        smtp = self.cfg.smtp
        self.ports = (free_shared_port(smtp.inbound_host, smtp.inbound_port),
                      free_shared_port(smtp.submission_host, smtp.submission_port))
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGHUP, self._hup)
        for worker in self.workers:
            self._start(worker)
        while not self.stopping:
            self._tick()
            time.sleep(0.1)
        self._drain()
        return 0
