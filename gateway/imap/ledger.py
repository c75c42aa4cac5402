"""What happened to each pulled message: decide once, remember it, never twice.

Blocking (database) code: the poller runs it in a worker thread.  A message is judged like
SMTP mail (the RCPT checks, then `pipeline.ingest`); its `imap_seen` row is written in the
same transaction as the outcome (through `Inbound.before_commit`), so a crash between the
commit and the move on the server only means the next pass finds the row and just moves
the message.  The unique key (account, mailbox, UIDVALIDITY, UID) lets one of two pollers
commit; the other's IntegrityError reads as "already done".  After a UIDVALIDITY change (or under
another account name) the same bytes (SHA-256) or the same Message-ID of an accepted
message count as done.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError

from gateway import audit, metrics, pipeline, quarantine
from gateway.decisions import (REFUSED_NULL_SENDER, REFUSED_SENDER, REFUSED_STAFF, TOO_BIG,
                               UNKNOWN_RECIPIENT, Reject)
from gateway.imap import envelope
from gateway.models import ImapSeen, utcnow
from gateway.smtp import limits
from gateway.smtp.admission import check_recipient

log = logging.getLogger("gateway.imap")

RCPT_REASONS = {UNKNOWN_RECIPIENT: "unknown-recipient", REFUSED_SENDER: "sender-not-admitted",
                REFUSED_NULL_SENDER: "null-sender", REFUSED_STAFF: "not-staff"}
FOLDER_OF = {"accepted": "done", "duplicate": "done", "refused": "refused", "held": "error",
             "deferred": None}


@dataclass
class Outcome:
    outcome: str  # accepted | duplicate | refused | held (quarantined) | deferred (left)
    reason: str | None = None
    messages: list = field(default_factory=list)  # gateway message ids (accepted)
    again: bool = False  # already recorded: this pass only moves it
    by: str | None = None  # the poller that recorded it (when again)
    age: float = 0.0  # seconds since it was recorded (when again)

    @property
    def folder(self) -> str | None:
        return FOLDER_OF[self.outcome]


@dataclass
class Position:
    uidvalidity: int
    uid: int


class Ledger:
    def __init__(self, services, acct, poller: str):
        self.s = services
        self.acct = acct
        self.poller = poller

    def _where(self, pos: Position):
        return (ImapSeen.account == self.acct.name, ImapSeen.mailbox == self.acct.mailbox,
                ImapSeen.uidvalidity == pos.uidvalidity, ImapSeen.uid == pos.uid)

    def recorded(self, pos: Position) -> Outcome | None:
        with self.s.factory() as session:
            row = session.scalars(select(ImapSeen).where(*self._where(pos))).first()
            if row is None:
                return None
            return Outcome(row.outcome, row.reason, again=True, by=row.poller,
                           age=(utcnow() - row.created_at).total_seconds())

    def _accepted_before(self, sha: str, message_id: str | None) -> bool:
        same = [ImapSeen.raw_sha256 == sha]
        if message_id:
            same.append(ImapSeen.message_id == message_id)
        with self.s.factory() as session:  # any account: two names for one mailbox
            return session.scalars(select(ImapSeen.id).where(
                ImapSeen.outcome == "accepted", or_(*same)).limit(1)).first() is not None

    def _row(self, pos: Position, env, sha: str, outcome: str, reason=None) -> ImapSeen:
        return ImapSeen(account=self.acct.name, mailbox=self.acct.mailbox,
                        uidvalidity=pos.uidvalidity, uid=pos.uid, message_id=env.message_id,
                        raw_sha256=sha, outcome=outcome, reason=reason, poller=self.poller)

    def _record(self, pos: Position, env, sha: str, outcome: str, reason=None) -> Outcome:
        """Record an outcome that has no other effect (refused, duplicate)."""
        try:
            with self.s.transaction() as session:
                row = self._row(pos, env, sha, outcome, reason)
                session.add(row)
                session.flush()
                audit.record(session, "imap", f"imap.{outcome}", "imap_seen", row.id,
                             account=self.acct.name, uid=pos.uid, reason=reason)
        except IntegrityError:
            return self._already(pos)
        return Outcome(outcome, reason)

    def _already(self, pos: Position) -> Outcome:
        known = self.recorded(pos)
        if known is None:
            raise RuntimeError("integrity error without a recorded position")
        return known

    def handle(self, pos: Position, raw: bytes) -> Outcome:
        """Judge one fetched message (or find its earlier judgement) and record it."""
        known = self.recorded(pos)
        if known is not None:
            return known
        sha = hashlib.sha256(raw).hexdigest()
        env = envelope.derive(self.s.addresses, raw, self.acct.rcpt)
        if self._accepted_before(sha, env.message_id):
            metrics.message_duplicate("duplicate", "imap")
            return self._record(pos, env, sha, "duplicate")
        try:
            inbound = self._inbound(pos, env, sha, raw)
        except Reject as decision:  # what SMTP decides before DATA is handed over
            metrics.message_refused(decision.reason, "imap")
            return self._decided(pos, env, sha, decision)
        return self._run(pos, env, sha, inbound)

    def _run(self, pos: Position, env, sha: str, inbound) -> Outcome:
        try:
            contexts = pipeline.ingest(self.s, inbound)
        except Reject as decision:
            return self._decided(pos, env, sha, decision)
        except IntegrityError:
            return self._already(pos)
        except Exception as error:
            if quarantine.is_unavailable(error):
                raise
            return self._crashed(pos, env, sha, inbound, error)
        return Outcome("accepted", messages=[c.message.id for c in contexts if c.message])

    def _crashed(self, pos: Position, env, sha: str, inbound, error) -> Outcome:
        """A step crashed: counted in the quarantine like SMTP mail; once it is held there
        the server copy goes to error_folder, until then it stays for another try."""
        if quarantine.record_crash(self.s, inbound, error).startswith("2"):
            return self._record(pos, env, sha, "held", "quarantined")
        metrics.message_tempfailed("imap")
        return Outcome("deferred", "crashed")

    def _decided(self, pos: Position, env, sha: str, decision: Reject) -> Outcome:
        """A decision as SMTP would answer it: 2xx (the same bytes came before, e.g. over
        SMTP) is a duplicate, 4xx (try later, e.g. the hourly limit) leaves the message in
        place unrecorded, 5xx refuses it."""
        if decision.reply.startswith("2"):
            return self._record(pos, env, sha, "duplicate", decision.reason)
        if decision.reply.startswith("4"):
            return Outcome("deferred", decision.reason)
        return self._record(pos, env, sha, "refused", decision.reason)

    def _admitted(self, env) -> list[str]:
        """The RCPT-time checks SMTP mail gets; raises Reject when no recipient is left."""
        admitted, first = [], None
        for rcpt in env.rcpt_tos:
            reply = check_recipient(self.s, env.mail_from, rcpt)
            if reply is None:
                admitted.append(rcpt)
            else:
                first = first or reply
        if not admitted:
            raise Reject(first, RCPT_REASONS.get(first, "rcpt-refused"))
        return admitted

    def _inbound(self, pos: Position, env, sha: str, raw: bytes) -> pipeline.Inbound:
        """The Inbound for `ingest`, after SMTP's pre-DATA checks (size, content limits,
        recipients); raises Reject like SMTP would refuse."""
        if len(raw) > self.s.cfg.smtp.max_message_bytes:
            raise Reject(TOO_BIG, "too-big")
        too_much = limits.check_content(raw, self.s.cfg.smtp)
        if too_much is not None:
            raise Reject(*too_much)

        def record_seen(session, contexts) -> None:
            session.add(self._row(pos, env, sha, "accepted"))
            session.flush()  # a second poller's duplicate key fails here, rolling back all

        return pipeline.Inbound(
            raw=raw, mail_from=env.mail_from, rcpt_tos=self._admitted(env), source="imap",
            session_id=f"imap:{self.acct.name}:{pos.uidvalidity}:{pos.uid}",
            envelope_rewritten=env.rewritten, before_commit=record_seen)
