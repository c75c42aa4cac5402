"""IMAP APPEND delivery: a routing target ``imap:NAME`` puts the mail into a folder of an
``[[imap.accounts]]`` mailbox (``[imap.folders] NAME = { account = ..., folder = ... }``).

Same interface as the other backends (``async deliver(outbox_id, created_epoch, mail_from,
recipient, raw)``, ``async close()``); the IMAP work is the standard library's imaplib in a
worker thread (one session per account, kept open, checked with NOOP).  `WithImapFolders`
wraps the configured backend and sends ``imap:`` recipients here.  Idempotent: before
appending, the folder is searched for the mail's ``X-Portal-Outbox`` header, so a delivery
repeated after a crash (appended, but not yet marked sent) finds its earlier copy.
Connection problems are a `TemporaryFailure` (the worker retries with backoff); an unknown
NAME is a `PermanentFailure`.  TLS as for IMAP pull: never downgraded.
"""
from __future__ import annotations

import asyncio
import email.parser
import email.policy
import imaplib
import logging
import re
import threading

from gateway.delivery.errors import PermanentFailure, TemporaryFailure
from gateway.imap import tls

log = logging.getLogger("gateway.delivery.imap")
PREFIX = "imap:"


def is_imap_target(recipient: str) -> bool:
    return recipient.lower().startswith(PREFIX)


def _quote(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _crlf(raw: bytes) -> bytes:
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def outbox_header(raw: bytes) -> str | None:
    headers = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw)
    value = headers.get("X-Portal-Outbox")
    return str(value).strip() if value is not None else None


def open_session(acct) -> imaplib.IMAP4:
    """A logged-in imaplib session with the account's TLS policy (never downgraded)."""
    timeout = acct.timeout_seconds
    if acct.tls == "implicit":
        conn = imaplib.IMAP4_SSL(acct.host, acct.port, ssl_context=tls.context(acct),
                                 timeout=timeout)
    else:
        if acct.tls == "none":
            tls.check_plaintext(acct)
        conn = imaplib.IMAP4(acct.host, acct.port, timeout=timeout)
        if acct.tls == "starttls":
            if "STARTTLS" in conn.capabilities:
                conn.starttls(ssl_context=tls.context(acct))
            else:
                conn.logout()
                tls.check_plaintext(acct)
    conn.login(acct.username, acct.password)
    return conn


class ImapAppendDelivery:
    def __init__(self, cfg):
        self.cfg = cfg
        self._sessions: dict[str, imaplib.IMAP4] = {}
        self._lock = threading.Lock()

    def target(self, recipient: str):
        name = recipient[len(PREFIX):].lower() if is_imap_target(recipient) else ""
        target = self.cfg.imap.folders.get(name)
        if target is None:
            raise PermanentFailure("no [imap.folders] entry for this target")
        return target, self.cfg.imap.account(target.account)

    async def deliver(self, outbox_id: int, created_epoch: int, mail_from: str,
                      recipient: str, raw: bytes) -> str:
        return await asyncio.to_thread(self.append, outbox_id, recipient, raw)

    async def close(self) -> None:
        await asyncio.to_thread(self.close_sessions)

    def append(self, outbox_id: int, recipient: str, raw: bytes) -> str:
        """Append `raw` to the target's folder unless it is there already; returns the folder."""
        target, acct = self.target(recipient)
        marker = outbox_header(raw) or str(outbox_id)
        with self._lock:
            try:
                conn = self._session(acct)
                self._select(conn, target.folder)
                if not self._present(conn, marker):
                    self._append(conn, target.folder, raw)
            except (imaplib.IMAP4.error, OSError, EOFError, tls.TlsRequired) as error:
                self._drop(acct.name)
                log.warning("imap append failed", extra={"outbox_id": outbox_id,
                                                         "account": acct.name,
                                                         "error": type(error).__name__})
                raise TemporaryFailure(f"imap append: {type(error).__name__}") from error
        return target.folder

    def _session(self, acct) -> imaplib.IMAP4:
        conn = self._sessions.get(acct.name)
        if conn is not None:
            try:
                conn.noop()
                return conn
            except (imaplib.IMAP4.error, OSError, EOFError):
                self._drop(acct.name)
        conn = self._sessions[acct.name] = open_session(acct)
        return conn

    def _drop(self, name: str) -> None:
        conn = self._sessions.pop(name, None)
        if conn is not None:
            try:
                conn.shutdown()
            except Exception:
                pass

    @staticmethod
    def _select(conn, folder: str) -> None:
        typ, _ = conn.select(_quote(folder))
        if typ != "OK":
            conn.create(_quote(folder))
            typ, data = conn.select(_quote(folder))
            if typ != "OK":
                raise imaplib.IMAP4.error(f"select: {typ}")

    @staticmethod
    def _present(conn, marker: str) -> bool:
        """True when a message whose X-Portal-Outbox is exactly `marker` is in the folder
        (SEARCH HEADER matches substrings, so each hit's header is compared)."""
        typ, data = conn.uid("SEARCH", None, "HEADER", "X-Portal-Outbox", _quote(marker))
        if typ != "OK":
            raise imaplib.IMAP4.error("search failed")
        uids = (data[0] or b"").split()
        if not uids:
            return False
        typ, data = conn.uid("FETCH", b",".join(uids).decode(),
                             "(BODY.PEEK[HEADER.FIELDS (X-Portal-Outbox)])")
        found = re.findall(rb"(?im)^X-Portal-Outbox:\s*(\S+)\s*$",
                           b"".join(part[1] for part in data if isinstance(part, tuple)))
        return marker.encode() in found

    @staticmethod
    def _append(conn, folder: str, raw: bytes) -> None:
        typ, data = conn.append(_quote(folder), None, None, _crlf(raw))
        if typ != "OK":
            raise imaplib.IMAP4.error(f"append: {typ}")

    def close_sessions(self) -> None:
        with self._lock:
            for name in list(self._sessions):
                self._drop(name)


class WithImapFolders:
    """A backend that sends ``imap:NAME`` recipients to IMAP APPEND and the rest to
    `inner` (Maildir or relay)."""

    def __init__(self, inner, cfg):
        self.inner = inner
        self.imap = ImapAppendDelivery(cfg)

    async def deliver(self, outbox_id: int, created_epoch: int, mail_from: str,
                      recipient: str, raw: bytes):
        backend = self.imap if is_imap_target(recipient) else self.inner
        return await backend.deliver(outbox_id, created_epoch, mail_from, recipient, raw)

    async def flush(self) -> None:
        flush = getattr(self.inner, "flush", None)
        if flush is not None:
            await flush()

    async def close(self) -> None:
        await self.imap.close()
        await self.inner.close()
