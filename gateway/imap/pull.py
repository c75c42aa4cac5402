"""IMAP pull: one poller per ``[[imap.accounts]]`` entry, entering at `pipeline.ingest`.

A pass searches the mailbox, fetches each message (BODY.PEEK, so nothing is flagged), has
the ledger judge and record it in one transaction, and only then moves it: accepted mail to
``done_folder``, refused mail to ``refused_folder`` (kept, never answered).  A database
error leaves the message in place for the next pass; a message that crashes the gateway
three times is set aside in ``error_folder``.  Between passes the poller IDLEs where the
server advertises it and polls otherwise; a lost connection is retried with capped
exponential backoff and jitter.
"""
from __future__ import annotations

import asyncio
import logging
import random
import socket
from collections import Counter

import aioimaplib
from sqlalchemy.exc import DBAPIError

from gateway import metrics
from gateway.db import DatabaseUnavailable
from gateway.imap.client import ImapClient, ImapError
from gateway.imap.ledger import Ledger, Position
from gateway.imap.tls import TlsRequired

log = logging.getLogger("gateway.imap")
MOVE_BATCH = 50
CRASH_LIMIT = 3
TRANSIENT = (DBAPIError, DatabaseUnavailable, OSError)


class DatabaseDown(Exception):
    """The ledger could not reach the database: wait, keep the connection, try again."""


def backoff_delay(attempt: int, base: float = 1.0, cap: float = 300.0) -> float:
    """Capped exponential backoff with jitter (half to full of the capped step)."""
    step = min(cap, base * (2 ** max(0, attempt - 1)))
    return step * random.uniform(0.5, 1.0)


class ImapPoller:
    """Pulls one account.  `name` identifies this poller in the ledger (default: the host
    name, so a restarted gateway moves what it committed before a crash at once); a message
    another poller recorded is left to that poller for `takeover_seconds`, because two IMAP
    sessions moving one message at the same time can leave two copies in the folder."""
    backoff_base = 1.0
    backoff_cap = 300.0

    def __init__(self, services, account_cfg, name: str | None = None):
        self.s = services
        self.acct = account_cfg
        self.name = name or socket.gethostname() or "gateway"
        self.takeover_seconds = max(60.0, 4 * account_cfg.timeout_seconds)
        self.ledger = Ledger(services, account_cfg, self.name)
        self.state = "new"  # connecting | draining | idle | polling | waiting | stopped
        self.counts: Counter = Counter()
        self._crashes: Counter = Counter()
        self._stop = asyncio.Event()

    def _log(self, level: int, event: str, **ids) -> None:
        log.log(level, event, extra={"account": self.acct.name, **ids})

    def stop(self) -> None:
        self._stop.set()

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stop.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    async def run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            client = ImapClient(self.acct)
            try:
                self.state = "connecting"
                await client.connect()
                attempt = 0
                self._log(logging.INFO, "imap connected", tls=self.acct.tls)
                await self._session(client)
            except TlsRequired as error:
                self._log(logging.ERROR, "imap server refused: no TLS", error=str(error))
            except (ImapError, OSError, asyncio.TimeoutError,
                    aioimaplib.AioImapException) as error:
                self._log(logging.WARNING, "imap connection failed",
                          error=f"{type(error).__name__}: {error}"[:200])
            except Exception:
                log.exception("imap poller error", extra={"account": self.acct.name})
            finally:
                await client.close()
            if self._stop.is_set():
                break
            attempt += 1
            self.state = "waiting"
            await self._sleep(backoff_delay(attempt, self.backoff_base, self.backoff_cap))
        self.state = "stopped"

    async def _session(self, client: ImapClient) -> None:
        for folder in (self.acct.done_folder, self.acct.refused_folder, self.acct.error_folder):
            await client.ensure_folder(folder)
        while not self._stop.is_set():
            self.state = "draining"
            uidvalidity = await client.select(self.acct.mailbox)
            try:
                await self._drain(client, uidvalidity)
            except DatabaseDown:
                metrics.message_tempfailed("imap")
                self.state = "waiting"
                await self._sleep(self.acct.poll_seconds)
                continue
            metrics.imap_polled(self.acct.name)
            if self._stop.is_set():
                return
            if self.acct.use_idle and client.has("IDLE"):
                self.state = "idle"
                await client.idle(self.acct.idle_seconds, self._stop)
                metrics.imap_polled(self.acct.name)  # DONE answered: the server is there
            else:
                self.state = "polling"
                await self._sleep(self.acct.poll_seconds)

    async def _drain(self, client: ImapClient, uidvalidity: int) -> None:
        """One pass over the mailbox; moves happen only after the outcomes are committed."""
        moves: dict[str, list[int]] = {"done": [], "refused": [], "error": []}
        try:
            for uid in await client.uids():
                if self._stop.is_set():
                    break
                raw = await client.fetch(uid)
                if raw is None:
                    continue  # moved away meanwhile (another poller)
                folder = await self._judge(Position(uidvalidity, uid), raw)
                if folder:
                    moves[folder].append(uid)
                if sum(map(len, moves.values())) >= MOVE_BATCH:
                    await self._move(client, moves)
        finally:
            if not client.lost.is_set():
                await self._move(client, moves)

    async def _judge(self, pos: Position, raw: bytes) -> str | None:
        """The folder the message goes to, or None to leave it where it is for now."""
        ids = {"uidvalidity": pos.uidvalidity, "uid": pos.uid}
        try:
            outcome = await asyncio.to_thread(self.ledger.handle, pos, raw)
        except TRANSIENT as error:
            self._log(logging.WARNING, "imap message left in place: database unavailable",
                      error=type(error).__name__, **ids)
            raise DatabaseDown() from error
        except Exception as error:
            key = (pos.uidvalidity, pos.uid)
            self._crashes[key] += 1
            self._log(logging.ERROR, "imap message failed", error=type(error).__name__,
                      attempt=self._crashes[key], **ids)
            return "error" if self._crashes[key] >= CRASH_LIMIT else None
        if outcome.again and outcome.by != self.name and outcome.age < self.takeover_seconds:
            self.counts["left_to_other"] += 1
            return None  # its poller moves it (or we do, once takeover_seconds have passed)
        self.counts[outcome.outcome if not outcome.again else "again"] += 1
        if not outcome.again:
            self._log(logging.INFO, f"imap message {outcome.outcome}", reason=outcome.reason,
                      messages=outcome.messages, **ids)
        return outcome.folder  # None for "deferred": left for a later pass

    async def _move(self, client: ImapClient, moves: dict[str, list[int]]) -> None:
        targets = {"done": self.acct.done_folder, "refused": self.acct.refused_folder,
                   "error": self.acct.error_folder}
        for kind, uids in moves.items():
            if uids:
                await client.move(uids, targets[kind])
                self.counts[f"moved_{kind}"] += len(uids)
                uids.clear()


def start_imap(services) -> list[asyncio.Task]:
    """One task per configured account; each task's poller is its `.poller` attribute."""
    tasks = []
    for acct in services.cfg.imap.accounts:
        poller = ImapPoller(services, acct)
        task = asyncio.create_task(poller.run(), name=f"imap:{acct.name}")
        task.poller = poller
        tasks.append(task)
    return tasks
