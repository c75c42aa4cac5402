"""`serve`: every listener and worker in one event loop.

SIGTERM/SIGINT drain within ``[gateway] drain_seconds``: the listeners stop accepting, a
session between transactions gets ``421`` and is closed, a transaction in progress may
finish (its ``250`` only after its commit), the outbox worker goes on sending due mail
(urgent first) until the deadline, so what was accepted just before the signal leaves now;
what is still running at the deadline is cut (an SMTP client then has no ``250`` and
retries; nothing is half-stored because every message is one transaction).  SIGHUP reloads
rules and templates (a bad file keeps the old ones live).

With ``[gateway] workers = N`` (N > 1) this runs once in each of N worker processes
(gateway.workers starts and watches them): every worker has both SMTP listeners (bound with
``SO_REUSEPORT``, so the kernel shares connections among them) and an outbox worker (its
claims make each mail go out once); worker 0 alone also has the HTTP and ops listeners, the
deadline sweeper and the IMAP pollers.
"""
from __future__ import annotations

import asyncio
import logging
import signal

from gateway import metrics

from gateway.deadlines import DeadlineSweeper
from gateway.delivery.worker import OutboxWorker
from gateway.enrollment.web import start_http
from gateway.imap import start_imap
from gateway.ops_http import start_ops
from gateway.smtp.inbound import GatewaySMTP, start_inbound
from gateway.smtp.submission import start_submission

log = logging.getLogger("gateway.app")


class Gateway:
    def __init__(self, services, inbound_port: int | None = None,
                 submission_port: int | None = None, http_port: int | None = None,
                 ops_port: int | None = None, worker: int | None = None):
        self.s = services
        # None: the only process; else this worker's index among [gateway] workers
        self.worker_index = worker
        self.inbound_port = inbound_port
        self.submission_port = submission_port
        self.http_port, self.http_runner = http_port, None
        # the ops listener (/healthz, /metrics): port 0 (any free port) when the HTTP port
        # is given as 0, as tests do
        self.ops_port, self.ops_runner = (0 if http_port == 0 and ops_port is None
                                          else ops_port), None
        self.sweeper = DeadlineSweeper(services)
        self.servers: list[asyncio.AbstractServer] = []
        self.worker = OutboxWorker(services)
        self.tasks: list[asyncio.Task] = []
        self.imap_tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        if self.s.cfg.policy.auth_mode == "off":
            log.warning("sender authentication is off (auth_mode = \"off\"): loopback "
                        "quick start only; anyone who reaches the listener can claim a "
                        "patient's address")
        cfg, shared = self.s.cfg.smtp, self.worker_index is not None
        port = cfg.inbound_port if self.inbound_port is None else self.inbound_port
        server = await start_inbound(self.s, cfg.inbound_host, port, reuse_port=shared)
        self.servers.append(server)
        self.inbound_port = server.sockets[0].getsockname()[1]
        port = cfg.submission_port if self.submission_port is None else self.submission_port
        server = await start_submission(self.s, cfg.submission_host, port, reuse_port=shared)
        self.servers.append(server)
        self.submission_port = server.sockets[0].getsockname()[1]
        if self.worker_index:  # workers 1..N-1: SMTP and outbox only
            self.tasks.append(asyncio.create_task(self.worker.run(), name="outbox"))
            log.info("listening", extra={"inbound": f"{cfg.inbound_host}:{self.inbound_port}",
                                         "submission": f"{cfg.submission_host}:"
                                                       f"{self.submission_port}"})
            return
        http = self.s.cfg.http
        self.http_runner = await start_http(self.s, http.host, http.port
                                            if self.http_port is None else self.http_port,
                                            listeners=self.listener_state)
        self.http_port = self.http_runner.port
        self.ops_runner = await start_ops(self.s, http.ops_host, http.ops_port
                                          if self.ops_port is None else self.ops_port,
                                          listeners=self.listener_state)
        self.ops_port = self.ops_runner.port
        self.tasks.append(asyncio.create_task(self.worker.run(), name="outbox"))
        self.tasks.append(asyncio.create_task(self.sweeper.run(), name="deadlines"))
        self.imap_tasks = start_imap(self.s)  # one poller per [[imap.accounts]]
        self.tasks += self.imap_tasks
        log.info("listening", extra={"inbound": f"{cfg.inbound_host}:{self.inbound_port}",
                                     "submission": f"{cfg.submission_host}:"
                                                   f"{self.submission_port}",
                                     "http": f"{http.host}:{self.http_port}",
                                     "ops": f"{http.ops_host}:{self.ops_port}"})

    def listener_state(self) -> dict[str, bool]:
        """For /healthz: is each SMTP listener accepting connections?"""
        names = ("inbound", "submission")
        return {names[i] if i < len(names) else f"listener{i}": server.is_serving()
                for i, server in enumerate(self.servers)}

    def reload(self) -> None:
        try:
            self.s.reload()
        except Exception as e:
            metrics.reload(False)
            log.error("reload refused, old rules stay live", extra={"error": str(e)})
            return
        metrics.reload(True)
        log.info("reloaded rules and templates")

    @staticmethod
    def _sessions(ours: set) -> list:
        """The live SMTP sessions of our listeners (their socket names are in `ours`)."""
        found = []
        for proto in list(GatewaySMTP.live):
            transport = proto.transport
            if transport is None or transport.is_closing():
                continue
            sockname = transport.get_extra_info("sockname")
            if sockname and tuple(sockname[:2]) in ours:
                found.append(proto)
        return found

    @staticmethod
    def _in_transaction(proto) -> bool:
        envelope = getattr(proto, "envelope", None)
        return envelope is not None and envelope.mail_from is not None

    @staticmethod
    def _close_session(proto, reply: bytes = b"421 4.3.2 Service shutting down, "
                                              b"please try again later\r\n") -> None:
        try:
            proto.transport.write(reply)
        except Exception:
            pass
        proto.transport.close()

    async def stop(self, deadline: float | None = None) -> None:
        """Drain: everything below shares one deadline (``[gateway] drain_seconds``)."""
        loop = asyncio.get_running_loop()
        if deadline is None:
            deadline = self.s.cfg.gateway.drain_seconds
        end = loop.time() + deadline
        ours = {tuple(sock.getsockname()[:2]) for server in self.servers
                for sock in server.sockets or ()}
        for server in self.servers:
            server.close()  # no new sessions
        self.sweeper.stop()
        for task in self.imap_tasks:
            task.poller.stop()  # each finishes the message it is in, then logs out
        # Due mail keeps going out (urgent first); no new send starts in the last moments,
        # so the last outcome is recorded before the deadline.
        self.worker.drain(end - min(2.0, deadline * 0.1))
        for runner in (self.http_runner, self.ops_runner):
            if runner is not None:
                await runner.cleanup()
        remaining = []
        while True:
            remaining = []
            for proto in self._sessions(ours):
                if self._in_transaction(proto):
                    remaining.append(proto)
                else:
                    self._close_session(proto)  # between transactions: 421
            if not remaining or loop.time() >= end:
                break
            await asyncio.sleep(0.05)
        if remaining:
            log.warning("drain deadline passed, closing sessions in a transaction",
                        extra={"sessions": len(remaining)})
            for proto in remaining:
                self._close_session(proto)
        self.worker.finish_when_idle()  # no session left that could queue more mail
        pending = [t for t in self.tasks if not t.done()]
        if pending:
            _, pending = await asyncio.wait(pending, timeout=max(0.0, end - loop.time()))
        if pending:
            log.warning("drain deadline passed, cancelling workers",
                        extra={"tasks": sorted(t.get_name() for t in pending)})
            for task in pending:
                task.cancel()
            await asyncio.wait(pending, timeout=2)

    async def run_forever(self) -> None:
        await self.start()
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        await stop.wait()
        log.info("draining")
        await self.stop()
        log.info("stopped")
