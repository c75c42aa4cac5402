"""The MX listener: a thin aiosmtpd handler that checks, hands over to `ingest`, answers.

Runs in the service's own event loop (``loop.create_server``), not aiosmtpd's threaded
Controller.  Database work runs in worker threads.  No reply ever carries internal detail:
any error is ``451 4.3.0``.
"""
from __future__ import annotations

import asyncio
import logging
import secrets

from aiosmtpd.smtp import SMTP

from gateway import pipeline
from gateway.decisions import ACCEPTED, BARE_LINE_ENDING, TEMPFAIL, TOO_BIG, Reject
from gateway.smtp.admission import check_recipient, envelope_rewritten
from gateway.smtp.tls import server_tls

log = logging.getLogger("gateway.smtp")
logging.getLogger("mail.log").setLevel(logging.WARNING)  # it logs addresses and content


class GatewaySMTP(SMTP):
    """aiosmtpd's server with our wording for its own built-in refusals."""

    async def push(self, status):
        if isinstance(status, str):
            if status.startswith("552 Error"):
                status = TOO_BIG
            elif status.startswith("500 Error: (") or status.startswith("500 Error: Cannot"):
                status = TEMPFAIL
        await super().push(status)


def has_bare_line_endings(data: bytes) -> bool:
    crlf = data.count(b"\r\n")
    return data.count(b"\n") != crlf or data.count(b"\r") != crlf


def session_id(session) -> str:
    sid = getattr(session, "gateway_id", None)
    if sid is None:
        sid = session.gateway_id = secrets.token_hex(6)
    return sid


class InboundHandler:
    def __init__(self, services, source: str = "smtp"):
        self.services = services
        self.source = source

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if len(envelope.rcpt_tos) >= self.services.cfg.smtp.max_recipients:
            return "452 4.5.3 Too many recipients"
        reply = await asyncio.to_thread(check_recipient, self.services,
                                        envelope.mail_from or "", address)
        if reply is not None:
            log.info("rcpt refused", extra={"session": session_id(session),
                                            "reply": reply[:9]})
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        sid = session_id(session)
        raw = envelope.original_content or b""
        if has_bare_line_endings(raw):
            log.info("message refused", extra={"session": sid, "reason": "bare-line-ending"})
            return BARE_LINE_ENDING
        inbound = pipeline.Inbound(
            raw=raw, mail_from=envelope.mail_from or "", rcpt_tos=list(envelope.rcpt_tos),
            source=self.source, session_id=sid,
            envelope_rewritten=envelope_rewritten(envelope.mail_from or ""))
        try:
            contexts = await asyncio.to_thread(pipeline.ingest, self.services, inbound)
        except Reject as decision:
            log.info("message refused", extra={"session": sid, "reason": decision.reason})
            return decision.reply
        except Exception as error:
            log.error("message tempfailed", extra={"session": sid,
                                                   "error": type(error).__name__})
            return TEMPFAIL
        log.info("message accepted", extra={
            "session": sid, "messages": [c.message.id for c in contexts if c.message]})
        return ACCEPTED

    async def handle_exception(self, error):
        log.error("smtp session error", extra={"error": type(error).__name__})
        return TEMPFAIL


async def start_inbound(services, host: str, port: int) -> asyncio.AbstractServer:
    cfg = services.cfg
    handler = InboundHandler(services)
    tls = server_tls(cfg)
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: GatewaySMTP(handler, hostname=cfg.gateway.hostname,
                            ident="Portal Mail Gateway", decode_data=False,
                            data_size_limit=cfg.smtp.max_message_bytes,
                            enable_SMTPUTF8=True, timeout=cfg.smtp.session_timeout_seconds,
                            tls_context=tls),
        host=host, port=port)
