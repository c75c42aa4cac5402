"""SMTP AUTH for the submission listener: Argon2 checks that cannot stall or leak.

- The Argon2 verification (slow on purpose) runs in a worker thread, at most
  ``MAX_CONCURRENT`` at a time, so a burst of AUTH attempts never blocks the event loop.
- An unknown user is checked against a dummy hash: the answer takes as long as for a
  known user, so timing does not tell which logins exist.  The dummy hash (itself one full
  Argon2 computation) is made by the first check of any login, known or not, so no
  start pays for it and its cost tells nothing about the login.
- After ``FAILURES_BEFORE_BACKOFF`` failures from one client address within
  ``WINDOW_SECONDS``, that address gets ``454 4.7.0`` without any check until the window
  has passed (a success clears its count).
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import threading
import time

from aiosmtpd.smtp import AuthResult, LoginPassword
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from gateway import metrics

log = logging.getLogger("gateway.submission")

MAX_CONCURRENT = 2
FAILURES_BEFORE_BACKOFF = 5
WINDOW_SECONDS = 900.0
BACKED_OFF = "454 4.7.0 Too many failed authentication attempts; try again later"


class Authenticator:
    def __init__(self, users: dict, clock=time.monotonic):
        self.users = dict(users)
        self.hasher = PasswordHasher()
        self._dummy: str | None = None
        self._dummy_lock = threading.Lock()
        self.clock = clock
        self._ok: set[tuple[str, str]] = set()
        self._failures: dict[str, list[float]] = {}
        self._semaphore: asyncio.Semaphore | None = None

    @property
    def dummy(self) -> str:
        """The hash an unknown login is checked against, made once on first use."""
        with self._dummy_lock:
            if self._dummy is None:
                self._dummy = self.hasher.hash(secrets.token_hex(16))
            return self._dummy

    def backed_off(self, ip: str) -> bool:
        now = self.clock()
        recent = [t for t in self._failures.get(ip, []) if now - t < WINDOW_SECONDS]
        self._failures[ip] = recent
        if not recent:
            self._failures.pop(ip, None)
        return len(recent) >= FAILURES_BEFORE_BACKOFF

    def _verify(self, user: str, secret: bytes) -> bool:
        """Blocking: one Argon2 verification (worker thread)."""
        key = (user, hashlib.sha256(secret).hexdigest())
        if key in self._ok:
            return True
        dummy = self.dummy  # before the lookup: the first check pays for it, whoever asks
        hashed = self.users.get(user)
        try:
            ok = self.hasher.verify(hashed if hashed else dummy, secret) and bool(hashed)
        except (VerificationError, InvalidHashError):
            ok = False
        if ok:
            self._ok.add(key)
        return ok

    async def check(self, sid: str, ip: str, data: LoginPassword) -> AuthResult:
        if self.backed_off(ip):
            log.warning("auth backed off", extra={"session": sid})
            return AuthResult(success=False, handled=False, message=BACKED_OFF)
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(MAX_CONCURRENT)
        user = data.login.decode("utf-8", "replace")
        async with self._semaphore:
            ok = await asyncio.to_thread(self._verify, user, data.password)
        if ok:
            self._failures.pop(ip, None)
        else:
            self._failures.setdefault(ip, []).append(self.clock())
            metrics.auth_failure("submission")
        log.info("auth", extra={"session": sid, "success": ok})
        return AuthResult(success=ok, handled=False, auth_data=data if ok else None)


def deferring_authenticator(server, session, envelope, mechanism, auth_data):
    """aiosmtpd's synchronous hook: only hands the credentials on; `SubmissionSMTP` awaits
    the real check (`Authenticator.check`) off the event loop."""
    if not isinstance(auth_data, LoginPassword):
        return AuthResult(success=False, handled=False)
    return AuthResult(success=False, handled=False, auth_data=auth_data)
