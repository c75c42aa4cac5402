"""The submission listener: the portal application sends patient notifications.

AUTH PLAIN/LOGIN against argon2 hashes from config, over TLS except on loopback.  Each
recipient must be an active patient (550 5.1.1 per bad recipient, the others still go);
the message must name a transactional kind in X-Portal-Kind (else 550 5.7.1).
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import warnings

from aiosmtpd.smtp import AuthResult, LoginPassword
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from gateway import audit, metrics, notifications, patients
from gateway.config import is_loopback
from gateway.decisions import ACCEPTED, BARE_LINE_ENDING, TEMPFAIL
from gateway.smtp.inbound import has_bare_line_endings, session_id, smtp_factory
from gateway.smtp.limits import check_content
from gateway.smtp.tls import server_tls
from gateway.steps.parse import parse_bytes

log = logging.getLogger("gateway.submission")
# AUTH without TLS is allowed only on a loopback listener (checked in config); aiosmtpd
# warns about it on every connection.
warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
NOT_A_PATIENT = "550 5.1.1 Recipient is not an active portal patient"


class Authenticator:
    def __init__(self, users: dict):
        self.users = dict(users)
        self.hasher = PasswordHasher()
        self._ok: set[tuple[str, str]] = set()

    def __call__(self, server, session, envelope, mechanism, auth_data):
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user = auth_data.login.decode("utf-8", "replace")
        secret = auth_data.password
        key = (user, hashlib.sha256(secret).hexdigest())
        if key in self._ok:  # argon2 is slow on purpose; verify each secret once
            return AuthResult(success=True)
        hashed = self.users.get(user)
        try:
            ok = bool(hashed) and self.hasher.verify(hashed, secret)
        except (VerificationError, InvalidHashError):
            ok = False
        if ok:
            self._ok.add(key)
        else:
            metrics.auth_failure("submission")
        log.info("auth", extra={"session": session_id(session), "success": ok})
        return AuthResult(success=ok, handled=False)


def _recipient_ok(services, address: str) -> bool:
    with services.factory() as session:
        return patients.is_admissible(patients.by_email(session, address),
                                      services.cfg.policy.allowed_states)


def _queue(services, raw: bytes, rcpts: list[str], kind: str, sid: str) -> list[int]:
    ids = []
    with services.transaction() as session:
        for rcpt in dict.fromkeys(r.lower() for r in rcpts):
            patient = patients.by_email(session, rcpt)
            msg, _ = parse_bytes(raw)
            ids.append(notifications.prepare(services, session, patient, msg, kind,
                                             f"submission:{sid}"))
    services.committed()
    return ids


class SubmissionHandler:
    def __init__(self, services):
        self.services = services

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if not await asyncio.to_thread(_recipient_ok, self.services, address):
            return await self._refuse(session_id(session), "rcpt-not-active-patient",
                                      NOT_A_PATIENT)
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        sid = session_id(session)
        raw = envelope.original_content or b""
        if has_bare_line_endings(raw):
            return await self._refuse(sid, "bare-line-ending", BARE_LINE_ENDING)
        refused = check_content(raw, self.services.cfg.smtp)
        if refused is not None:
            return await self._refuse(sid, refused[1], refused[0])
        msg, _ = parse_bytes(raw)
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


async def start_submission(services, host: str, port: int) -> asyncio.AbstractServer:
    cfg = services.cfg
    handler = SubmissionHandler(services)
    tls = server_tls(cfg)
    auth = Authenticator(cfg.smtp.submission_users)
    factory = smtp_factory(services, handler, tls, require_starttls=tls is not None,
                           auth_required=True, auth_require_tls=not is_loopback(host),
                           authenticator=auth)
    loop = asyncio.get_running_loop()
    return await loop.create_server(factory, host=host, port=port)
