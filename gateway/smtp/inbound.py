"""The MX listener: a thin aiosmtpd handler that checks, hands over to `ingest`, answers.

Runs in the service's own event loop (``loop.create_server``), not aiosmtpd's threaded
Controller.  Database work runs in worker threads.  No reply ever carries internal detail:
any error is ``451 4.3.0``; a message that keeps crashing the pipeline is quarantined
(gateway.quarantine).  ``GatewaySMTP`` adds the session limits of gateway.smtp.limits.
"""
from __future__ import annotations

import asyncio
import collections
import functools
import logging
import re
import secrets
import weakref

from aiosmtpd.smtp import SMTP

from gateway import audit, metrics, pipeline, quarantine
from gateway.auth.strict import envelope_error
from gateway.decisions import ACCEPTED, BARE_LINE_ENDING, TEMPFAIL, TOO_BIG, Reject
from gateway.smtp import limits as L
from gateway.smtp.admission import (LOOK_UP, check_recipient, envelope_rewritten,
                                     without_database)
from gateway.smtp.data import receive_data
from gateway.smtp.tls import server_tls

log = logging.getLogger("gateway.smtp")
logging.getLogger("mail.log").setLevel(logging.CRITICAL)  # it logs addresses and content

# aiosmtpd's own reply texts -> ours (prefix match).
REWORDED = (("552 Error", TOO_BIG), ("500 Error: (", TEMPFAIL),
            ("500 Error: Cannot", TEMPFAIL), ("500 Command line too long", L.COMMAND_TOO_LONG),
            ("500 Line too long", L.LINE_TOO_LONG), ("530 Must issue", L.STARTTLS_FIRST))


class YieldingReader:
    """A session's StreamReader that hands the event loop back every `every` lines: a
    StreamReader with data buffered returns lines without ever suspending, so reading one
    message of 80,000 short lines would hold every other session and /healthz meanwhile."""

    def __init__(self, reader: asyncio.StreamReader, every: int = 64):
        object.__setattr__(self, "_real", reader)
        object.__setattr__(self, "_every", every)
        object.__setattr__(self, "_lines", 0)

    async def readuntil(self, separator: bytes = b"\n") -> bytes:
        lines = self._lines + 1
        object.__setattr__(self, "_lines", lines)
        if lines % self._every == 0:
            await asyncio.sleep(0)
        return await self._real.readuntil(separator)

    def __getattr__(self, name):
        return getattr(self._real, name)

    def __setattr__(self, name, value) -> None:  # aiosmtpd sets _transport on STARTTLS
        setattr(self._real, name, value)


_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
# <dot-atom@dot-atom>, then nothing or whitespace and ESMTP parameters (no comment, no
# quote, no angle bracket: anything unusual goes to aiosmtpd's own parser).
_PLAIN_ANGLE = re.compile(rf"<({_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>"
                          r"(?:[ \t]+([A-Za-z][^()<>\"\\]*))?")


class GatewaySMTP(SMTP):
    """aiosmtpd's server with our wording for its own replies and the session limits:
    concurrent sessions (overall, per client address, per client /24 or /64), a short
    window to start a mail transaction (``pre_mail_timeout_seconds``: after connecting and
    after each transaction), a whole-session deadline, an idle timeout that says 421, line
    and command length, NOOP/RSET/other command caps.
    `live` holds every open session of this process, so a drain can find them."""

    live: "weakref.WeakSet[GatewaySMTP]" = weakref.WeakSet()

    def __init__(self, handler, *, limits: L.SessionLimits | None = None, **kwargs):
        self._limits = limits
        self._slot: str | None = None
        self._refused = False
        self._deadline: asyncio.TimerHandle | None = None
        self._pre_mail: asyncio.TimerHandle | None = None
        if limits is not None:
            self.line_length_limit = limits.line_length + 1  # + a transparent dot
            kwargs.setdefault("command_call_limit", dict(limits.call_limits))
        super().__init__(handler, **kwargs)
        # aiosmtpd keeps these on the class, shared by all sessions; ours are per session.
        self.command_size_limits = collections.defaultdict(lambda: self.command_size_limit)
        if limits is not None:
            self.command_size_limit = limits.command_length

    def connection_made(self, transport) -> None:
        if self.transport is None and self._limits is not None:  # the plaintext connection
            peer = transport.get_extra_info("peername")
            ip = str(peer[0]) if peer else "?"
            if not self._limits.counter.acquire(ip):
                self._refused = True
                log.warning("session refused: too many sessions")
                transport.write(L.TOO_MANY_SESSIONS.encode() + b"\r\n")
                transport.close()
                return
            self._slot = ip
            self._deadline = self.loop.call_later(self._limits.deadline_seconds,
                                                  self._say_and_close, L.SESSION_DEADLINE)
        GatewaySMTP.live.add(self)
        super().connection_made(transport)
        self._watch_transaction()

    def _cb_client_connected(self, reader, writer) -> None:
        super()._cb_client_connected(YieldingReader(reader), writer)

    def _in_transaction(self) -> bool:
        return self.envelope is not None and self.envelope.mail_from is not None

    def _watch_transaction(self) -> None:
        """Outside a mail transaction a session has pre_mail_seconds to start one."""
        if self._limits is None or self._refused:
            return
        if self._in_transaction():
            if self._pre_mail is not None:
                self._pre_mail.cancel()
                self._pre_mail = None
        elif self._pre_mail is None:
            self._pre_mail = self.loop.call_later(self._limits.pre_mail_seconds,
                                                  self._pre_mail_expired)

    def _pre_mail_expired(self) -> None:
        self._pre_mail = None
        if not self._in_transaction():
            self._say_and_close(L.PRE_MAIL_TIMEOUT)

    @functools.wraps(SMTP.smtp_RSET)  # keeps aiosmtpd's syntax help
    async def smtp_RSET(self, arg):
        await super().smtp_RSET(arg)
        self._watch_transaction()

    @functools.wraps(SMTP.smtp_DATA)  # keeps aiosmtpd's syntax help
    async def smtp_DATA(self, arg):
        await self._data(arg)
        self._watch_transaction()

    async def _data(self, arg) -> None:
        """aiosmtpd's DATA checks, then the lines read into one buffer (gateway.smtp.data)."""
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
        elif arg:
            await self.push("501 Syntax: DATA")
        else:
            await receive_data(self)

    @functools.wraps(SMTP.smtp_EHLO)
    async def smtp_EHLO(self, hostname):
        await super().smtp_EHLO(hostname)
        self._watch_transaction()

    @functools.wraps(SMTP.smtp_HELO)
    async def smtp_HELO(self, hostname):
        await super().smtp_HELO(hostname)
        self._watch_transaction()

    def connection_lost(self, error) -> None:
        if self._refused:
            return
        GatewaySMTP.live.discard(self)
        if self._slot is not None:
            self._limits.counter.release(self._slot)
            self._slot = None
        for timer in (self._deadline, self._pre_mail):
            if timer is not None:
                timer.cancel()
        super().connection_lost(error)

    def _timeout_cb(self):
        self._say_and_close(L.IDLE_TIMEOUT)

    def _say_and_close(self, text: str) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        log.info("session closed", extra={"session": session_id(self.session),
                                          "reply": text[:9]})
        try:
            transport.write(text.encode() + b"\r\n")
        finally:
            transport.close()

    @functools.wraps(SMTP.smtp_MAIL)  # keeps aiosmtpd's syntax help
    async def smtp_MAIL(self, arg):
        """An envelope sender that is not plain RFC 5321 gets 553 5.1.7, never normalised."""
        session = self.session
        ready = session is not None and session.host_name and (
            not self._auth_required or session.authenticated)
        if ready and arg and arg[:5].upper() == "FROM:":
            refused = envelope_error(arg)
            if refused is not None:
                log.info("mail refused", extra={"session": session_id(session),
                                                "reply": refused[:9]})
                await self.push(refused)
                return
        await super().smtp_MAIL(arg)
        self._watch_transaction()

    def _getaddr(self, arg):
        """aiosmtpd's address parsing (the email package's full RFC 5322 parser, about
        0.5 ms a command), except for the usual ``<local@domain>`` in plain ASCII dot-atoms
        with nothing or ESMTP parameters after it, read with one regular expression: the
        same address and the same rest (tests/test_smtp_getaddr.py)."""
        plain = _PLAIN_ANGLE.fullmatch(arg or "")
        if plain is None:
            return super()._getaddr(arg)
        address, rest = plain.group(1), plain.group(2) or ""
        if self.local_part_limit and len(address.rpartition("@")[0]) > self.local_part_limit:
            return None, None
        return address, rest

    async def push(self, status):
        if isinstance(status, str):
            for prefix, ours in REWORDED:
                if status.startswith(prefix):
                    status = ours
                    break
        await super().push(status)


def has_bare_line_endings(data: bytes) -> bool:
    crlf = data.count(b"\r\n")
    return data.count(b"\n") != crlf or data.count(b"\r") != crlf


def envelope_sender(envelope) -> str:
    """MAIL FROM as an address; "" for the null sender (aiosmtpd keeps it as "<>")."""
    mail_from = envelope.mail_from or ""
    return "" if mail_from == "<>" else mail_from


def session_id(session) -> str:
    if session is None:
        return "-"
    sid = getattr(session, "gateway_id", None)
    if sid is None:
        sid = session.gateway_id = secrets.token_hex(6)
    return sid


def accept(services, inbound: pipeline.Inbound) -> str:
    """Content limits, then the pipeline; the SMTP reply for one message (worker thread)."""
    sid = inbound.session_id
    refused = L.check_content(inbound.raw, services.cfg.smtp)
    if refused is not None:
        log.info("message refused", extra={"session": sid, "reason": refused[1]})
        metrics.message_refused(refused[1], inbound.source)
        audit.refusal(services, inbound.source, sid, refused[1], refused[0])
        return refused[0]
    try:
        contexts = pipeline.ingest(services, inbound)
    except Reject as decision:
        log.info("message refused" if decision.reason != "duplicate" else
                 "message already stored", extra={"session": sid, "reason": decision.reason})
        return decision.reply
    except Exception as error:
        return _crashed(services, inbound, error)
    stored = [c.message for c in contexts if c.message]
    log.info("message accepted", extra={  # ids and fixed vocabularies only, never content
        "session": sid, "messages": [m.id for m in stored],
        "category": ",".join(dict.fromkeys(str(m.category) for m in stored)),
        "urgent": any(bool(m.urgent) for m in stored)})
    return ACCEPTED


def _crashed(services, inbound: pipeline.Inbound, error: Exception) -> str:
    metrics.message_tempfailed(inbound.source)
    if quarantine.is_unavailable(error):
        log.error("message tempfailed", extra={"session": inbound.session_id,
                                               "error": type(error).__name__})
        return TEMPFAIL
    try:
        return quarantine.record_crash(services, inbound, error)
    except Exception as inner:
        log.error("message tempfailed", extra={"session": inbound.session_id,
                                               "error": type(error).__name__,
                                               "quarantine_error": type(inner).__name__})
        return TEMPFAIL


class InboundHandler:
    def __init__(self, services, source: str = "smtp"):
        self.services = services
        self.source = source

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if len(envelope.rcpt_tos) >= self.services.cfg.smtp.max_recipients:
            return await self._refuse_rcpt(session, "452 4.5.3 Too many recipients")
        reply = without_database(self.services, envelope_sender(envelope), address)
        if reply is LOOK_UP:  # a token: a database read, in a worker thread
            reply = await asyncio.to_thread(check_recipient, self.services,
                                            envelope_sender(envelope), address)
        if reply is not None:
            return await self._refuse_rcpt(session, reply)
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        sid = session_id(session)
        raw = envelope.original_content or b""
        if has_bare_line_endings(raw):
            log.info("message refused", extra={"session": sid, "reason": "bare-line-ending"})
            metrics.message_refused("bare-line-ending", self.source)
            await asyncio.to_thread(audit.refusal, self.services, self.source, sid,
                                    "bare-line-ending", BARE_LINE_ENDING)
            return BARE_LINE_ENDING
        inbound = pipeline.Inbound(
            raw=raw, mail_from=envelope_sender(envelope), rcpt_tos=list(envelope.rcpt_tos),
            source=self.source, session_id=sid,
            envelope_rewritten=envelope_rewritten(envelope_sender(envelope)),
            client_ip=str(session.peer[0]) if session.peer else "",
            helo=session.host_name or "")
        return await asyncio.to_thread(accept, self.services, inbound)

    async def _refuse_rcpt(self, session, reply: str) -> str:
        """Log, count and audit a refusal at RCPT (the reply code, never the address)."""
        sid = session_id(session)
        log.info("rcpt refused", extra={"session": sid, "reply": reply[:9]})
        metrics.rcpt_refused(reply, self.source)
        await asyncio.to_thread(audit.refusal, self.services, self.source, sid,
                                metrics.rcpt_reason(reply), reply)
        return reply

    async def handle_exception(self, error):
        log.error("smtp session error", extra={"error": type(error).__name__})
        metrics.message_tempfailed(self.source)
        return TEMPFAIL


def smtp_factory(services, handler, tls, cls=None, **kwargs):
    """A protocol factory for one listener; every session shares its SessionLimits."""
    cfg = services.cfg
    limits = L.SessionLimits.from_config(cfg.smtp)
    cls = cls or GatewaySMTP
    return lambda: cls(handler, limits=limits, hostname=cfg.gateway.hostname,
                               ident="Portal Mail Gateway", decode_data=False,
                               data_size_limit=cfg.smtp.max_message_bytes,
                               enable_SMTPUTF8=True,
                               timeout=cfg.smtp.session_timeout_seconds,
                               tls_context=tls, **kwargs)


async def start_inbound(services, host: str, port: int,
                        reuse_port: bool = False) -> asyncio.AbstractServer:
    tls = server_tls(services.cfg)
    factory = smtp_factory(services, InboundHandler(services), tls,
                           require_starttls=bool(tls) and services.cfg.smtp.require_starttls)
    loop = asyncio.get_running_loop()
    return await loop.create_server(factory, host=host, port=port, reuse_port=reuse_port)
