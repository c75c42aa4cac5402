"""A small aioimaplib wrapper: TLS (implicit or STARTTLS) or refusal, and a timeout around
every call.

aioimaplib leaves a command pending forever when the connection drops (IDLE included), so
every call here races the command against its timeout and against the connection-lost
callback: a dead server is noticed at once, a silent one after ``timeout_seconds``.
"""
from __future__ import annotations

import asyncio
import logging
import re

import aioimaplib
from aioimaplib.aioimaplib import Command, quoted

from gateway.imap import tls

log = logging.getLogger("gateway.imap")
logging.getLogger("aioimaplib").setLevel(logging.WARNING)  # its DEBUG/INFO carry content

_UIDVALIDITY = re.compile(rb"\[UIDVALIDITY (\d+)\]")
_FETCH_UID = re.compile(rb"UID (\d+)")


class ImapError(Exception):
    """The connection failed, timed out or the server said NO/BAD: reconnect later."""


def _ok(response, what: str):
    if response.result != "OK":
        raise ImapError(f"{what}: {response.result}")
    return response


def _uid_set(uids) -> str:
    return ",".join(str(u) for u in sorted(uids))


class ImapClient:
    def __init__(self, acct):
        self.acct = acct
        self.imap: aioimaplib.IMAP4 | None = None
        self.lost = asyncio.Event()

    # -- plumbing ----------------------------------------------------------------------------

    async def call(self, awaitable, timeout: float | None = None):
        """Await one IMAP call; ImapError on timeout or when the connection drops."""
        if self.lost.is_set():
            raise ImapError("connection lost")
        task = asyncio.ensure_future(awaitable)
        lost = asyncio.ensure_future(self.lost.wait())
        try:
            done, _ = await asyncio.wait({task, lost}, timeout=timeout or self.acct.timeout_seconds,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
        if task in done:
            return task.result()
        task.cancel()
        raise ImapError("connection lost" if lost in done else "timeout")

    def _connection_lost(self, _exc) -> None:
        self.lost.set()

    @property
    def capabilities(self) -> set[str]:
        return self.imap.protocol.capabilities if self.imap else set()

    def has(self, capability: str) -> bool:
        return capability.upper() in self.capabilities

    # -- session -----------------------------------------------------------------------------

    async def connect(self) -> None:
        acct = self.acct
        ctx = tls.context(acct) if acct.tls == "implicit" else None
        if acct.tls == "none":
            tls.check_plaintext(acct)
        self.imap = aioimaplib.IMAP4(host=acct.host, port=acct.port,
                                     timeout=acct.timeout_seconds, ssl_context=ctx,
                                     conn_lost_cb=self._connection_lost)
        await self.call(self.imap.wait_hello_from_server())
        if acct.tls == "starttls":
            if self.has("STARTTLS"):
                await self._starttls()
            else:
                tls.check_plaintext(acct)
                log.warning("imap plaintext session", extra={"account": acct.name})
        if self.has("LOGINDISABLED"):
            raise ImapError("server refuses LOGIN on this connection")
        _ok(await self.call(self.imap.login(acct.username, acct.password)), "login")
        await self.call(self.imap.protocol.capability())  # they change after login

    async def _starttls(self) -> None:
        proto = self.imap.protocol
        _ok(await self.call(proto.execute(Command("STARTTLS", proto.new_tag(),
                                                  loop=proto.loop))), "starttls")
        loop = asyncio.get_running_loop()
        transport = await self.call(loop.start_tls(
            proto.transport, proto, tls.context(self.acct), server_hostname=self.acct.host))
        proto.transport = transport
        await self.call(proto.capability())  # only what the server says under TLS counts

    async def close(self) -> None:
        if self.imap is None:
            return
        imap, self.imap = self.imap, None
        if not self.lost.is_set():
            try:
                await asyncio.wait_for(imap.logout(), 2)
            except (Exception, asyncio.CancelledError):
                pass
        transport = imap.protocol.transport
        if transport is not None:
            transport.close()
        for task in list(imap.tasks) + list(imap.protocol.tasks):
            task.cancel()

    # -- mailbox operations ------------------------------------------------------------------

    async def select(self, mailbox: str) -> int:
        """SELECT the mailbox; returns its UIDVALIDITY."""
        response = _ok(await self.call(self.imap.select(quoted(mailbox))), "select")
        for line in response.lines:
            match = _UIDVALIDITY.search(bytes(line))
            if match:
                return int(match.group(1))
        raise ImapError("select: no UIDVALIDITY")

    async def ensure_folder(self, folder: str) -> None:
        response = await self.call(self.imap.create(quoted(folder)))
        said = b" ".join(bytes(line).upper() for line in response.lines)
        if response.result != "OK" and b"ALREADYEXISTS" not in said \
                and b"ALREADY EXISTS" not in said:
            raise ImapError("create folder: " + response.result)

    async def uids(self) -> list[int]:
        response = _ok(await self.call(self.imap.uid_search("ALL", charset=None)), "search")
        found: list[int] = []
        for line in response.lines[:-1]:  # aioimaplib drops the "SEARCH" word; last: status
            tokens = bytes(line).split()
            if tokens[:1] == [b"SEARCH"]:
                tokens = tokens[1:]
            found.extend(int(t) for t in tokens if t.isdigit())
        return sorted(found)

    async def fetch(self, uid: int) -> bytes | None:
        """The message's raw bytes without setting \\Seen; None when it is gone."""
        response = _ok(await self.call(self.imap.uid("fetch", str(uid), "(UID BODY.PEEK[])")),
                       "fetch")
        lines = response.lines
        for i, line in enumerate(lines[:-1]):
            if isinstance(line, bytes) and b"FETCH" in line:
                match = _FETCH_UID.search(line)
                if match and int(match.group(1)) == uid and isinstance(lines[i + 1], bytearray):
                    return bytes(lines[i + 1])
        return None

    async def move(self, uids: list[int], folder: str) -> None:
        """MOVE where supported, else COPY + \\Deleted + (UID) EXPUNGE.

        A server says NO when some of the messages were expunged meanwhile (another poller
        moved them): then only those still there are moved, once more."""
        if not uids:
            return
        verb = "move" if self.has("MOVE") else "copy"
        response = await self.call(self.imap.uid(verb, _uid_set(uids), quoted(folder)))
        if response.result != "OK":
            uids = sorted(set(uids) & set(await self.uids()))
            if uids:
                _ok(await self.call(self.imap.uid(verb, _uid_set(uids), quoted(folder))), verb)
        if verb == "move" or not uids:
            return
        uid_set = _uid_set(uids)
        _ok(await self.call(self.imap.uid("store", uid_set, "+FLAGS.SILENT", r"(\Deleted)")),
            "store")
        if self.has("UIDPLUS"):
            _ok(await self.call(self.imap.uid("expunge", uid_set)), "expunge")
        else:
            _ok(await self.call(self.imap.expunge()), "expunge")

    async def idle(self, seconds: float, stop: asyncio.Event) -> None:
        """IDLE until the server reports a change, `stop` is set or `seconds` pass."""
        queue = self.imap.protocol.idle_queue
        while not queue.empty():
            queue.get_nowait()
        idle = await self.call(self.imap.idle_start(timeout=seconds + 60))
        push = asyncio.ensure_future(queue.get())
        waiters = {push, asyncio.ensure_future(self.lost.wait()),
                   asyncio.ensure_future(stop.wait())}
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        if self.lost.is_set():
            raise ImapError("connection lost during IDLE")
        self.imap.idle_done()
        _ok(await self.call(idle), "idle")  # DONE answered: the server is alive
