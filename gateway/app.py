"""`serve`: every listener and worker in one event loop.

SIGTERM/SIGINT drain (stop accepting, let sessions finish, let the worker finish its
batch); SIGHUP reloads rules and templates (a bad file keeps the old ones live).
"""
from __future__ import annotations

import asyncio
import logging
import signal

from gateway.deadlines import DeadlineSweeper
from gateway.delivery.worker import OutboxWorker
from gateway.enrollment.web import start_http
from gateway.smtp.inbound import start_inbound
from gateway.smtp.submission import start_submission

log = logging.getLogger("gateway.app")


class Gateway:
    def __init__(self, services, inbound_port: int | None = None,
                 submission_port: int | None = None, http_port: int | None = None):
        self.s = services
        self.inbound_port = inbound_port
        self.submission_port = submission_port
        self.http_port, self.http_runner = http_port, None
        self.sweeper = DeadlineSweeper(services)
        self.servers: list[asyncio.AbstractServer] = []
        self.worker = OutboxWorker(services)
        self.tasks: list[asyncio.Task] = []
        self.stopped = asyncio.Event()

    async def start(self) -> None:
        cfg = self.s.cfg.smtp
        port = cfg.inbound_port if self.inbound_port is None else self.inbound_port
        server = await start_inbound(self.s, cfg.inbound_host, port)
        self.servers.append(server)
        self.inbound_port = server.sockets[0].getsockname()[1]
        port = cfg.submission_port if self.submission_port is None else self.submission_port
        server = await start_submission(self.s, cfg.submission_host, port)
        self.servers.append(server)
        self.submission_port = server.sockets[0].getsockname()[1]
        http = self.s.cfg.http
        self.http_runner = await start_http(self.s, http.host, http.port
                                            if self.http_port is None else self.http_port)
        self.http_port = self.http_runner.port
        self.tasks.append(asyncio.create_task(self.worker.run(), name="outbox"))
        self.tasks.append(asyncio.create_task(self.sweeper.run(), name="deadlines"))
        log.info("listening", extra={"inbound": f"{cfg.inbound_host}:{self.inbound_port}",
                                     "submission": f"{cfg.submission_host}:"
                                                   f"{self.submission_port}",
                                     "http": f"{http.host}:{self.http_port}"})

    def reload(self) -> None:
        try:
            self.s.reload()
            log.info("reloaded rules and templates")
        except Exception as e:
            log.error("reload refused, old rules stay live", extra={"error": str(e)})

    async def stop(self, deadline: float = 30.0) -> None:
        for server in self.servers:
            server.close()
        for server in self.servers:
            try:
                await asyncio.wait_for(server.wait_closed(), deadline)
            except asyncio.TimeoutError:
                pass
        if self.http_runner is not None:
            await self.http_runner.cleanup()
        self.sweeper.stop()
        self.worker.stop()
        await asyncio.wait(self.tasks, timeout=deadline)
        self.stopped.set()

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
