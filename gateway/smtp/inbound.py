"""The MX listener: a thin aiosmtpd handler that checks, hands over to `ingest`, answers.

Runs in the service's own event loop (``loop.create_server``), not aiosmtpd's threaded
Controller.  Database work runs in worker threads.  No reply ever carries internal detail:
any error is ``451 4.3.0``; a message that keeps crashing the pipeline is quarantined
(gateway.quarantine).  ``GatewaySMTP`` adds the session limits of gateway.smtp.limits.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import secrets
import weakref

from aiosmtpd.smtp import SMTP

from gateway import audit, metrics, pipeline, quarantine
from gateway.decisions import ACCEPTED, BARE_LINE_ENDING, TEMPFAIL, TOO_BIG, Reject
from gateway.smtp import limits as L
from gateway.smtp.admission import check_recipient, envelope_rewritten
from gateway.smtp.tls import server_tls

log = logging.getLogger("gateway.smtp")
logging.getLogger("mail.log").setLevel(logging.CRITICAL)  # it logs addresses and content

# aiosmtpd's own reply texts -> ours (prefix match).
REWORDED = (("552 Error", TOO_BIG), ("500 Error: (", TEMPFAIL),
            ("500 Error: Cannot", TEMPFAIL), ("500 Command line too long", L.COMMAND_TOO_LONG),
            ("500 Line too long", L.LINE_TOO_LONG), ("530 Must issue", L.STARTTLS_FIRST))


class GatewaySMTP(SMTP):
    """aiosmtpd's server with our wording for its own replies and the session limits:
    concurrent sessions (overall, per client address), a whole-session deadline, an idle
    timeout that says 421, line and command length, NOOP/RSET/other command caps.
    `live` holds every open session of this process, so a drain can find them."""

    live: "weakref.WeakSet[GatewaySMTP]" = weakref.WeakSet()

    def __init__(self, handler, *, limits: L.SessionLimits | None = None, **kwargs):
        self._limits = limits
        self._slot: str | None = None
        self._refused = False
        self._deadline: asyncio.TimerHandle | None = None
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

    def connection_lost(self, error) -> None:
        if self._refused:
            return
        GatewaySMTP.live.discard(self)
        if self._slot is not None:
            self._limits.counter.release(self._slot)
            self._slot = None
        if self._deadline is not None:
            self._deadline.cancel()
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
        reply = await asyncio.to_thread(check_recipient, self.services,
                                        envelope.mail_from or "", address)
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
            raw=raw, mail_from=envelope.mail_from or "", rcpt_tos=list(envelope.rcpt_tos),
            source=self.source, session_id=sid,
            envelope_rewritten=envelope_rewritten(envelope.mail_from or ""))
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


def smtp_factory(services, handler, tls, **kwargs):
    """A protocol factory for one listener; every session shares its SessionLimits."""
    cfg = services.cfg
    limits = L.SessionLimits.from_config(cfg.smtp)
    return lambda: GatewaySMTP(handler, limits=limits, hostname=cfg.gateway.hostname,
                               ident="Portal Mail Gateway", decode_data=False,
                               data_size_limit=cfg.smtp.max_message_bytes,
                               enable_SMTPUTF8=True,
                               timeout=cfg.smtp.session_timeout_seconds,
                               tls_context=tls, **kwargs)


async def start_inbound(services, host: str, port: int) -> asyncio.AbstractServer:
    tls = server_tls(services.cfg)
    factory = smtp_factory(services, InboundHandler(services), tls,
                           require_starttls=bool(tls) and services.cfg.smtp.require_starttls)
    loop = asyncio.get_running_loop()
    return await loop.create_server(factory, host=host, port=port)
