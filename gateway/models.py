"""SQLAlchemy models: what the gateway keeps.

Message bodies are the patient's extracted text only; attachment bytes are never stored.
Times are naive UTC datetimes.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import (JSON, BigInteger, Boolean, DateTime, ForeignKey, Index, Integer,
                        String, Text, UniqueConstraint, event)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from gateway import crypto
from gateway.addresses import normalize
from gateway.sealed import EncryptedBytes, EncryptedText


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Patient(Base):
    __tablename__ = "patients"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_number: Mapped[str] = mapped_column(String(64), unique=True)
    first_name: Mapped[str] = mapped_column(EncryptedText("patients.first_name"))
    last_name: Mapped[str] = mapped_column(EncryptedText("patients.last_name"))
    email: Mapped[str | None] = mapped_column(EncryptedText("patients.email"))
    # HMAC of the normalised address (gateway.crypto.blind_index): one address, one patient
    email_index: Mapped[str | None] = mapped_column(String(64), index=True, unique=True)
    state: Mapped[str] = mapped_column(String(2))
    language: Mapped[str | None] = mapped_column(String(8))  # roster's ISO 639-1 code
    # the roster's optional birth date, ISO YYYY-MM-DD (sealed: a birth date is PHI)
    birth_date: Mapped[str | None] = mapped_column(EncryptedText("patients.birth_date"))
    status: Mapped[str] = mapped_column(String(16), default="roster")  # roster|invited|active|suspended
    suspend_reason: Mapped[str | None] = mapped_column(EncryptedText("patients.suspend_reason"))
    undeliverable: Mapped[bool] = mapped_column(Boolean, default=False)
    hard_bounces: Mapped[int] = mapped_column(Integer, default=0)
    password_hash: Mapped[str | None] = mapped_column(String(200))
    terms_version: Mapped[str | None] = mapped_column(String(40))
    terms_accepted_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    @property
    def display_name(self) -> str:
        """First and last name on one line (names are untrusted roster data)."""
        return " ".join(f"{self.first_name} {self.last_name}".split())


def address_index(address: str | None) -> str | None:
    """The blind index of an address (normalised; an unparsable one: trimmed, lowercased)."""
    if not address or not address.strip():
        return None
    return crypto.blind_index(normalize(address) or address.strip().lower())


@event.listens_for(Patient.email, "set")
def _index_email(target, value, _old, _initiator):
    """Whoever sets an address sets its index: look-ups and uniqueness go through it."""
    target.email_index = address_index(value)


class Proxy(Base):
    """A parent, guardian or caregiver who writes and receives mail for one patient,
    within a scope of categories (gateway.proxies).  One row per patient and address: a
    parent of two patients has two rows, each invited and enrolled on its own."""
    __tablename__ = "proxies"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    first_name: Mapped[str] = mapped_column(EncryptedText("proxies.first_name"))
    last_name: Mapped[str] = mapped_column(EncryptedText("proxies.last_name"))
    email: Mapped[str] = mapped_column(EncryptedText("proxies.email"))
    email_index: Mapped[str] = mapped_column(String(64), index=True)
    relation: Mapped[str] = mapped_column(EncryptedText("proxies.relation"))
    scope: Mapped[str | None] = mapped_column(String(200))  # category ids; None: the default
    status: Mapped[str] = mapped_column(String(16), default="roster")  # roster|invited|active|revoked
    password_hash: Mapped[str | None] = mapped_column(String(200))
    terms_version: Mapped[str | None] = mapped_column(String(40))
    terms_accepted_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    __table_args__ = (UniqueConstraint("patient_id", "email_index",
                                       name="uq_proxies_patient_address"),)

    @property
    def display_name(self) -> str:
        return " ".join(f"{self.first_name} {self.last_name}".split())


@event.listens_for(Proxy.email, "set")
def _index_proxy_email(target, value, _old, _initiator):
    target.email_index = address_index(value)


class Thread(Base):
    __tablename__ = "threads"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    kind: Mapped[str | None] = mapped_column(String(64))  # notification kind that opened it
    # the proxy this thread's conversation is with (None: the patient); staff answers go
    # to that party, within its scope (gateway.proxy_scope)
    proxy_id: Mapped[int | None] = mapped_column(ForeignKey("proxies.id"), index=True)
    outside_scope: Mapped[bool] = mapped_column(Boolean, default=False)
    category: Mapped[str | None] = mapped_column(String(32))
    urgent: Mapped[bool] = mapped_column(Boolean, default=False)
    team: Mapped[str | None] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default="open")  # open|waiting|answered|closed
    due_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    last_message_id: Mapped[str | None] = mapped_column(String(998))
    ref_chain: Mapped[str | None] = mapped_column(Text)  # References header chain
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    answered_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    __table_args__ = (Index("ix_threads_state_due", "state", "due_at"),)


class Token(Base):
    """An address token: reply+T (patient), staff+T (staff), bounces+T (one outbound mail)."""
    __tablename__ = "tokens"
    token: Mapped[str] = mapped_column(String(64), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(16))  # reply|staff|bounce
    thread_id: Mapped[int | None] = mapped_column(ForeignKey("threads.id"), index=True)
    patient_id: Mapped[int | None] = mapped_column(ForeignKey("patients.id"))
    outbox_id: Mapped[int | None] = mapped_column(Integer, index=True)
    # a staff token with party "patient": an answer sent to it goes to the patient's own
    # address, never to the thread's proxy (offered when an answer to a proxy was held)
    party: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class Message(Base):
    __tablename__ = "messages"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    thread_id: Mapped[int | None] = mapped_column(ForeignKey("threads.id"), index=True)
    patient_id: Mapped[int | None] = mapped_column(ForeignKey("patients.id"), index=True)
    proxy_id: Mapped[int | None] = mapped_column(ForeignKey("proxies.id"))  # who wrote it
    direction: Mapped[str] = mapped_column(String(16))  # patient|staff
    # a staff answer not relayed to a proxy: why (outside-scope | confidential-minor)
    held: Mapped[str | None] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(16), default="smtp")  # smtp|imap
    message_id: Mapped[str | None] = mapped_column(String(998))
    subject: Mapped[str | None] = mapped_column(EncryptedText("messages.subject"))
    body: Mapped[str | None] = mapped_column(EncryptedText("messages.body"))
    history: Mapped[str | None] = mapped_column(EncryptedText("messages.history"))
    category: Mapped[str | None] = mapped_column(String(32))
    urgent: Mapped[bool] = mapped_column(Boolean, default=False)
    rules: Mapped[list | None] = mapped_column(JSON)
    automatic: Mapped[bool] = mapped_column(Boolean, default=False)
    raw_sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    # pass | none | fail | off | unverified (let in without authentication: never counted
    # against the patient's rate, never acknowledged)
    sender_auth: Mapped[str | None] = mapped_column(String(16))
    received_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Attachment(Base):
    __tablename__ = "attachments"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"), index=True)
    filename: Mapped[str | None] = mapped_column(EncryptedText("attachments.filename"))
    declared_type: Mapped[str] = mapped_column(String(255))
    sniffed_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Outbox(Base):
    __tablename__ = "outbox"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))  # staff_copy|ack|emergency|refusal|...
    recipient: Mapped[str] = mapped_column(EncryptedText("outbox.recipient"))
    mail_from: Mapped[str] = mapped_column(String(320))
    raw: Mapped[bytes] = mapped_column(EncryptedBytes("outbox.raw"))
    state: Mapped[str] = mapped_column(String(16), default="queued")  # queued|sent|failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    lease_until: Mapped[dt.datetime | None] = mapped_column(DateTime)
    # the claiming process (gateway.delivery.owner): "<machine> <pid> <start> <run id>"
    claimed_by: Mapped[str | None] = mapped_column(String(200), index=True)
    last_error: Mapped[str | None] = mapped_column(EncryptedText("outbox.last_error"))
    thread_id: Mapped[int | None] = mapped_column(ForeignKey("threads.id"))
    patient_id: Mapped[int | None] = mapped_column(ForeignKey("patients.id"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    sent_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    __table_args__ = (Index("ix_outbox_state_next", "state", "next_attempt_at"),)


class NoticeSent(Base):
    """Caps refusal notices: one per address, reason and day."""
    __tablename__ = "notices_sent"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    address: Mapped[str] = mapped_column(String(320))
    reason: Mapped[str] = mapped_column(String(64))
    day: Mapped[str] = mapped_column(String(10))
    __table_args__ = (UniqueConstraint("address", "reason", "day"),)


class Audit(Base):
    __tablename__ = "audit"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64))
    object_type: Mapped[str] = mapped_column(String(32))
    object_id: Mapped[str | None] = mapped_column(String(64))
    patient_id: Mapped[int | None] = mapped_column(Integer, index=True)
    detail: Mapped[dict | None] = mapped_column(JSON)


# --- Deadlines and enrollment (issue 6) ------------------------------------------------


class ThreadNotice(Base):
    """A deadline notice for one thread and one due time: a reminder at an offset before
    it, or the escalation (offset 0).  The unique key makes each notice happen once,
    whatever the number of sweepers; `skipped` marks a reminder that was already stale
    when its turn came (a later stage was due too), so it is never sent late."""
    __tablename__ = "thread_notices"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    thread_id: Mapped[int] = mapped_column(ForeignKey("threads.id"))
    kind: Mapped[str] = mapped_column(String(16))  # reminder|escalation
    offset_minutes: Mapped[int] = mapped_column(Integer)  # before due_at; 0: escalation
    due_at: Mapped[dt.datetime] = mapped_column(DateTime)  # the due time it was for
    skipped: Mapped[bool] = mapped_column(Boolean, default=False)
    outbox_ids: Mapped[list | None] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    __table_args__ = (UniqueConstraint("thread_id", "kind", "offset_minutes", "due_at",
                                       name="uq_thread_notices_once"),)


class SweepMark(Base):
    """How far a sweeper has looked (its clock at the end of its last sweep)."""
    __tablename__ = "sweep_marks"
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    swept_until: Mapped[dt.datetime] = mapped_column(DateTime)


class Invite(Base):
    """An enrollment invitation.  Only SHA-256 hashes of its link tokens are stored: the
    invite's own link and, once the reminder went out, the reminder's link (either works;
    using one burns the invite)."""
    __tablename__ = "invites"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    proxy_id: Mapped[int | None] = mapped_column(ForeignKey("proxies.id"), index=True)
    email: Mapped[str] = mapped_column(EncryptedText("invites.email"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    reminder_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    state: Mapped[str] = mapped_column(String(16), default="live")  # live|used|void|expired|locked
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime)
    remind_at: Mapped[dt.datetime | None] = mapped_column(DateTime)  # NULL once reminded
    reminded_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    ended_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    created_by: Mapped[str] = mapped_column(String(200), default="cli")
    __table_args__ = (Index("ix_invites_state_expires", "state", "expires_at"),
                      Index("ix_invites_state_remind", "state", "remind_at"))


# --- IMAP pull (issue 5) -------------------------------------------------------------------

class ImapSeen(Base):
    """One message seen in a pulled mailbox, written in the same transaction as its outcome.

    The key (account, mailbox, uidvalidity, uid) makes a re-read harmless and lets only one
    of two pollers on one mailbox commit; raw_sha256 and message_id find a message again
    after a UIDVALIDITY change.  outcome: accepted | refused | duplicate.
    """
    __tablename__ = "imap_seen"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account: Mapped[str] = mapped_column(String(200))
    mailbox: Mapped[str] = mapped_column(String(500))
    uidvalidity: Mapped[int] = mapped_column(BigInteger)  # 32-bit unsigned in IMAP
    uid: Mapped[int] = mapped_column(BigInteger)
    message_id: Mapped[str | None] = mapped_column(String(998))
    raw_sha256: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(64))
    poller: Mapped[str] = mapped_column(String(200))  # who recorded it (host): who moves it
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    __table_args__ = (
        UniqueConstraint("account", "mailbox", "uidvalidity", "uid",
                         name="uq_imap_seen_position"),
        Index("ix_imap_seen_sha", "raw_sha256"),
        Index("ix_imap_seen_message_id", "message_id"),
    )


# --- Quarantine (issue 7) -------------------------------------------------------------------

class Quarantine(Base):
    """A message that made a pipeline step crash, keyed by the SHA-256 of its raw bytes.

    state ``retrying``: the sender got 451 and ``attempts`` counts the crashes; at
    ``[smtp] quarantine_after_crashes`` it becomes ``held``: the raw bytes and envelope are
    kept here, the sender gets 250 and ops see it in ``portal-gateway quarantine list``.
    ``released``: processed later by ``quarantine retry``; ``refused``: the retry refused it.
    """
    __tablename__ = "quarantine"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    raw_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    state: Mapped[str] = mapped_column(String(16), default="retrying")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error_type: Mapped[str] = mapped_column(String(200))
    step: Mapped[str | None] = mapped_column(String(100))
    source: Mapped[str] = mapped_column(String(16), default="smtp")
    session_id: Mapped[str | None] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer, default=0)
    mail_from: Mapped[str | None] = mapped_column(EncryptedText("quarantine.mail_from"))
    rcpt_tos: Mapped[list | None] = mapped_column(JSON)
    envelope_rewritten: Mapped[bool] = mapped_column(Boolean, default=False)
    raw: Mapped[bytes | None] = mapped_column(EncryptedBytes("quarantine.raw"))  # once held
    first_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    last_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    held_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    released_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    __table_args__ = (Index("ix_quarantine_state", "state"),)
