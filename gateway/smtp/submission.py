"""The submission listener: the portal application sends patient notifications.

AUTH PLAIN/LOGIN against argon2 hashes from config, over TLS except on loopback
(gateway.smtp.auth).  A staff member may also send an answer to ``staff+TOKEN`` here: it
runs the same staff chain as on the MX, with AUTH standing for sender authentication.  Each
recipient must be an active patient (550 5.1.1 per bad recipient, the others still go);
the message must name a transactional kind in X-Portal-Kind (else 550 5.7.1).
"""
from __future__ import annotations

import asyncio
import logging
import warnings

from aiosmtpd.smtp import AuthResult, LoginPassword

from gateway import audit, notifications, patients
from gateway.config import is_loopback
from gateway.decisions import ACCEPTED, BARE_LINE_ENDING, TEMPFAIL, Reject
from gateway.smtp.auth import Authenticator, deferring_authenticator
from gateway.pipeline import Inbound
from gateway.smtp.admission import check_recipient
from gateway.smtp.inbound import (GatewaySMTP, accept, envelope_sender,
                                  has_bare_line_endings, session_id, smtp_factory)
from gateway.smtp.limits import check_content
from gateway.smtp.tls import server_tls
from gateway.steps.parse import parse_bytes

log = logging.getLogger("gateway.submission")
# AUTH without TLS is allowed only on a loopback listener (checked in config); aiosmtpd
# warns about it on every connection.
warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
NOT_A_PATIENT = "550 5.1.1 Recipient is not an active portal patient"
ONE_KIND = "452 4.5.3 Send staff answers and patient notifications as separate messages"


class SubmissionSMTP(GatewaySMTP):
    """The session class of the submission listener: PLAIN and LOGIN credentials are
    checked by `Authenticator.check`, awaited here, off the event loop."""

    checker: Authenticator

    async def auth_PLAIN(self, _, args):
        return await self._finish(await super().auth_PLAIN(_, args))

    async def auth_LOGIN(self, _, args):
        return await self._finish(await super().auth_LOGIN(_, args))

    async def _finish(self, result: AuthResult) -> AuthResult:
        if result.success or not isinstance(result.auth_data, LoginPassword):
            return result
        peer = self.session.peer if self.session else None
        return await self.checker.check(session_id(self.session),
                                        str(peer[0]) if peer else "?", result.auth_data)


def _login(session) -> str:
    data = getattr(session, "auth_data", None)
    login = data.login if isinstance(data, LoginPassword) else b"?"
    return login.decode("utf-8", "replace") or "?"


def _recipient_ok(services, address: str) -> bool:
    with services.factory() as session:
        return patients.is_admissible(patients.by_email(session, address),
                                      services.cfg.policy.allowed_states)


def _queue(services, raw: bytes, rcpts: list[str], kind: str, sid: str) -> list[int]:
    ids = []
    with services.transaction() as session:
        for rcpt in dict.fromkeys(r.lower() for r in rcpts):
            patient = patients.by_email(session, rcpt)
            msg, _ = parse_bytes(raw, services.cfg.smtp)
            ids.append(notifications.prepare(services, session, patient, msg, kind,
                                             f"submission:{sid}"))
    services.committed()
    return ids


class SubmissionHandler:
    def __init__(self, services):
        self.services = services

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        staff_reply = self._is_staff_token(address)
        if envelope.rcpt_tos and staff_reply != self._is_staff_token(envelope.rcpt_tos[0]):
            return ONE_KIND
        if staff_reply:
            reply = await asyncio.to_thread(check_recipient, self.services,
                                            envelope_sender(envelope), address)
            if reply is not None:
                return reply
        elif not await asyncio.to_thread(_recipient_ok, self.services, address):
            return await self._refuse(session_id(session), "rcpt-not-active-patient",
                                      NOT_A_PATIENT)
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    def _is_staff_token(self, address: str) -> bool:
        local = self.services.addresses.parse(address)
        return local is not None and local.purpose == "staff"

    async def handle_DATA(self, server, session, envelope):
        sid = session_id(session)
        raw = envelope.original_content or b""
        if has_bare_line_endings(raw):
            return await self._refuse(sid, "bare-line-ending", BARE_LINE_ENDING)
        if self._is_staff_token(envelope.rcpt_tos[0]):
            # a staff answer sent with AUTH: the staff chain, AUTH standing for authentication
            inbound = Inbound(raw=raw, mail_from=envelope_sender(envelope),
                              rcpt_tos=list(envelope.rcpt_tos), source="submission",
                              session_id=sid, authenticated_user=_login(session))
            return await asyncio.to_thread(accept, self.services, inbound)
        refused = check_content(raw, self.services.cfg.smtp)
        if refused is not None:
            return await self._refuse(sid, refused[1], refused[0])
        try:
            msg, _ = parse_bytes(raw, self.services.cfg.smtp)
        except Reject as decision:
            return await self._refuse(sid, decision.reason, decision.reply)
        kind = notifications.kind_of(msg)
        if not notifications.is_transactional(self.services.cfg, kind):
            return await self._refuse(sid, "kind", notifications.NOT_TRANSACTIONAL)
        try:
            ids = await asyncio.to_thread(_queue, self.services, raw, envelope.rcpt_tos,
                                          kind, sid)
        except Exception as error:
            log.error("notification tempfailed", extra={"session": sid,
                                                        "error": type(error).__name__})
            return TEMPFAIL
        log.info("notification queued", extra={"session": sid, "outbox": ids, "kind": kind})
        return ACCEPTED

    async def _refuse(self, sid: str, reason: str, reply: str) -> str:
        """Log and audit a refusal (its reason code, never an address); the reply."""
        log.info("notification refused", extra={"session": sid, "reason": reason})
        await asyncio.to_thread(audit.refusal, self.services, "submission", sid, reason, reply)
        return reply

    async def handle_exception(self, error):
        log.error("submission session error", extra={"error": type(error).__name__})
        return TEMPFAIL


async def start_submission(services, host: str, port: int,
                           reuse_port: bool = False) -> asyncio.AbstractServer:
    cfg = services.cfg
    handler = SubmissionHandler(services)
    tls = server_tls(cfg)
    checker = Authenticator(cfg.smtp.submission_users)
    session_class = type("SubmissionSession", (SubmissionSMTP,), {"checker": checker})
    factory = smtp_factory(services, handler, tls, require_starttls=tls is not None,
                           auth_required=True, auth_require_tls=not is_loopback(host),
                           authenticator=deferring_authenticator, cls=session_class)
    loop = asyncio.get_running_loop()
    return await loop.create_server(factory, host=host, port=port, reuse_port=reuse_port)
