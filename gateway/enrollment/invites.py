"""Enrollment invites: a unique single-use link by mail, stored only as a hash.

* ``invite(services, account, email=None)``: the patient must be in the roster, not active
  or suspended, live in an allowed state and have an address that passes email-validator;
  every refusal is an ``InviteRefused`` that says why.  A new invite voids the patient's
  earlier live ones (their links stop working).  The patient becomes ``invited``.
* The link is ``[http] public_url`` + ``/enroll?token=T``; T has 256 random bits and only
  ``sha256(T)`` is stored.  Lifetime ``policy.invite_lifetime_days``.
* ``sweep`` (run by the deadline sweeper): an invite that passed its expiry is ``expired``
  and its patient goes back to ``roster``; once, ``reminder_before`` ahead of expiry, a
  reminder mail goes out.  The reminder carries its own link (only its hash is stored as
  well, since the first link cannot be recovered); either link works, the first use burns
  both.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import logging
import secrets
from dataclasses import dataclass

from sqlalchemy import and_, exists, or_, select
from sqlalchemy.orm import Session

from gateway import audit, outbox, patients
from gateway.addresses import AddressUnusable, checked
from gateway.clock import utcnow
from gateway.language import patient_language
from gateway.models import Invite, Patient, Proxy

log = logging.getLogger("gateway.invites")

MAX_REMINDER_LEAD = dt.timedelta(days=2)
ENDED = ("used", "void", "expired", "locked")


class InviteRefused(Exception):
    """The patient cannot be invited; the message says why."""


def new_token() -> str:
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def enroll_link(cfg, token: str, lang: str = "en") -> str:
    """The enrollment page's address; a non-English invite opens the page in its language."""
    suffix = "" if lang == "en" else f"&lang={lang}"
    return f"{cfg.http.public_url.rstrip('/')}/enroll?token={token}{suffix}"


def reminder_time(created: dt.datetime, expires: dt.datetime) -> dt.datetime:
    """When the one reminder goes out: two days before expiry, or halfway if sooner."""
    return expires - min(MAX_REMINDER_LEAD, (expires - created) / 2)


# -- checks --------------------------------------------------------------------------
def checked_address(address: str, check_deliverability: bool = False) -> str:
    try:
        return checked(address, check_deliverability)
    except AddressUnusable as e:
        raise InviteRefused(f"address {address!r} is not usable: {e}") from None


def check_patient(cfg, patient: Patient | None, account: str) -> None:
    if patient is None:
        raise InviteRefused(f"no patient with account {account} in the roster "
                            "(import the roster first)")
    if patient.status == "active":
        raise InviteRefused(f"patient {account} is already enrolled (active)")
    if patient.status == "suspended":
        raise InviteRefused(f"patient {account} is suspended; reinstate them instead")
    served = states_served_elsewhere(cfg, patient)
    if served:
        raise InviteRefused(f"patient {account} lives in {patient.state}; the portal serves "
                            f"only patients living in {served}")


def states_served_elsewhere(cfg, patient: Patient) -> str | None:
    """The states the portal serves, in words, when `patient` lives in none of them."""
    allowed = {s.upper() for s in cfg.policy.allowed_states}
    return None if patient.state.upper() in allowed else ", ".join(sorted(allowed))


def _address_for(session: Session, patient: Patient, email: str | None,
                 check_deliverability: bool) -> str:
    if email is None and not patient.email:
        raise InviteRefused(f"patient {patient.account_number} has no email address "
                            "(give one with --email)")
    if email is None and patient.undeliverable:
        raise InviteRefused(f"the address of patient {patient.account_number} is marked "
                            "undeliverable (give a corrected one with --email)")
    address = checked_address(email if email is not None else patient.email,
                              check_deliverability)
    other = patients.patient_with_address(session, address, patient.account_number)
    if other is not None:
        raise InviteRefused(f"address {address} already belongs to patient {other}; "
                            "each patient needs an address of their own")
    proxy = patients.proxy_with_address(session, address)
    if proxy is not None:
        raise InviteRefused(f"address {address} is the address of proxy {proxy}; a patient "
                            "needs an address of their own")
    return address


# -- whom an invite is for ---------------------------------------------------------------
@dataclass(frozen=True)
class Party:
    """Whom an invite is for: the patient, or a proxy writing for the patient.  Invite,
    reminder, expiry and enrollment are one flow for both; these are its differences."""
    row: Patient | Proxy

    @property
    def is_proxy(self) -> bool:
        return isinstance(self.row, Proxy)

    @property
    def kind(self) -> str:
        """'patient' or 'proxy': the audit object type and the prefix of its actions."""
        return "proxy" if self.is_proxy else "patient"

    @property
    def audit_id(self):
        return self.row.id if self.is_proxy else self.row.account_number

    @property
    def patient_id(self) -> int:
        return self.row.patient_id if self.is_proxy else self.row.id

    def set_status(self, session: Session, status: str, actor: str) -> None:
        if self.is_proxy:
            from gateway import proxies
            proxies.set_status(session, self.row, status, actor)
        else:
            patients.set_status(session, self.row, status, actor)

    def live_invites(self, session: Session) -> list[Invite]:
        """The party's own live invites (a patient's are not its proxies')."""
        if self.is_proxy:
            return live_proxy_invites(session, self.row.id)
        return live_invites(session, self.row.id)


def party_of(session: Session, invite: Invite) -> Party:
    if invite.proxy_id is not None:
        return Party(session.get(Proxy, invite.proxy_id))
    return Party(session.get(Patient, invite.patient_id))


# -- creating ------------------------------------------------------------------------
def create(session: Session, services, patient: Patient, email: str | None = None,
           now: dt.datetime | None = None, actor: str = "cli",
           check_deliverability: bool = False) -> tuple[Invite, str]:
    """Check, void older invites, store a new one and queue its mail; returns (invite, raw
    token).  The caller commits (and then calls services.committed())."""
    check_patient(services.cfg, patient, patient.account_number)
    address = _address_for(session, patient, email, check_deliverability)
    now = now or utcnow()
    if address != patient.email:
        patient.email, patient.undeliverable, patient.hard_bounces = address, False, 0
        audit.record(session, actor, "patient.updated", "patient", patient.account_number,
                     patient.id, fields=["email"])
    return issue(session, services, Party(patient), patient, address, now, actor)


def issue(session: Session, services, party: Party, patient: Patient, address: str,
          now: dt.datetime, actor: str) -> tuple[Invite, str]:
    """After the checks: void the party's earlier live invites (their links stop working),
    store a new live one for `address`, make the party invited and queue the invite mail.
    Returns (invite, raw token); the caller commits."""
    for old in party.live_invites(session):
        end(session, old, "void", now, actor, reason="resent")
    token = new_token()
    expires = now + dt.timedelta(days=services.cfg.policy.invite_lifetime_days)
    invite = Invite(patient_id=patient.id, proxy_id=party.row.id if party.is_proxy else None,
                    email=address, token_hash=hash_token(token), state="live",
                    created_at=now, expires_at=expires, remind_at=reminder_time(now, expires),
                    created_by=actor)
    session.add(invite)
    session.flush()
    if party.row.status != "invited":
        party.set_status(session, "invited", actor)
    _queue_mail(session, services, "invite", invite, patient, token)
    detail = {"proxy": party.row.id} if party.is_proxy else {}
    audit.record(session, actor, "invite.sent", "invite", invite.id, patient.id, **detail,
                 expires_at=expires.isoformat())
    log.info("invite queued", extra={"invite_id": invite.id, "patient_id": patient.id})
    return invite, token


def invite(services, account: str, email: str | None = None, actor: str = "cli",
           now: dt.datetime | None = None) -> Invite:
    """One invite in its own transaction; raises InviteRefused."""
    with services.transaction() as session:
        patient = patients.by_account(session, account)
        check_patient(services.cfg, patient, account)
        inv, _ = create(session, services, patient, email, now, actor)
    services.committed()
    return inv


def pending_accounts(session: Session, cfg) -> list[str]:
    """Roster patients in an allowed state with an address and no live invite."""
    live = exists().where(Invite.patient_id == Patient.id, Invite.state == "live",
                          Invite.proxy_id.is_(None))
    states = [s.upper() for s in cfg.policy.allowed_states]
    q = (select(Patient.account_number)
         .where(Patient.status.in_(("roster", "invited")), Patient.email.is_not(None),
                Patient.undeliverable.is_(False), Patient.state.in_(states), ~live)
         .order_by(Patient.account_number))
    return list(session.scalars(q))


@dataclass
class PendingReport:
    sent: int = 0
    refused: list[tuple[str, str]] | None = None


def invite_pending(services, progress=None, actor: str = "cli",
                   chunk: int = 200) -> PendingReport:
    """Invite everyone pending, `chunk` per transaction; progress(done, total) after each."""
    with services.factory() as session:
        accounts = pending_accounts(session, services.cfg)
    report = PendingReport(refused=[])
    for start in range(0, len(accounts), chunk):
        with services.transaction() as session:
            for account in accounts[start:start + chunk]:
                patient = patients.by_account(session, account)
                try:  # every refusal comes before anything is written
                    create(session, services, patient, None, None, actor)
                    report.sent += 1
                except InviteRefused as e:
                    report.refused.append((account, str(e)))
        services.committed()
        if progress:
            progress(min(start + chunk, len(accounts)), len(accounts))
    return report


def _queue_mail(session, services, template: str, invite: Invite, patient: Patient,
                token: str) -> None:
    """The invite (or reminder) mail; a proxy's invite uses the proxy_ templates and
    addresses the proxy by name (in the patient's roster language)."""
    from gateway.steps.acknowledge import practice_context
    s, cfg = services, services.cfg
    lang = patient_language(patient)
    name = patient.display_name
    if invite.proxy_id is not None:
        template, name = f"proxy_{template}", session.get(Proxy, invite.proxy_id).display_name
    msg = s.notices.build(
        template, sender=s.addresses.header_address(cfg.practice.name, s.addresses.portal),
        to=s.addresses.header_address(name, invite.email),
        domain=s.addresses.domain, headers={"Auto-Submitted": "auto-generated"},
        patient_name=name, lang=lang,
        enroll_link=enroll_link(cfg, token, lang), expires=invite.expires_at,
        **practice_context(cfg))
    outbox.enqueue(session, s.addresses, msg, invite.email, template, None, patient.id)


# -- looking up and ending -------------------------------------------------------------
def live_invites(session: Session, patient_id: int) -> list[Invite]:
    """The patient's own live invites (not those of the patient's proxies)."""
    return list(session.scalars(select(Invite).where(Invite.patient_id == patient_id,
                                                     Invite.proxy_id.is_(None),
                                                     Invite.state == "live")))


def live_proxy_invites(session: Session, proxy_id: int) -> list[Invite]:
    return list(session.scalars(select(Invite).where(Invite.proxy_id == proxy_id,
                                                     Invite.state == "live")))


def find(session: Session, token: str | None, lock: bool = False) -> Invite | None:
    if not token or len(token) > 200:
        return None
    h = hash_token(token)
    q = select(Invite).where(or_(Invite.token_hash == h, Invite.reminder_token_hash == h))
    if lock:
        q = q.with_for_update()
    return session.scalar(q)


def status_of(invite: Invite | None, now: dt.datetime) -> str:
    """unknown | live | used | void | expired | locked."""
    if invite is None:
        return "unknown"
    if invite.state == "live" and invite.expires_at <= now:
        return "expired"
    return invite.state


def end(session: Session, invite: Invite, state: str, now: dt.datetime, actor: str,
        **detail) -> None:
    """End a live invite; an invited party left without a live invite returns to roster."""
    assert state in ENDED
    invite.state, invite.ended_at, invite.remind_at = state, now, None
    audit.record(session, actor, f"invite.{state}", "invite", invite.id, invite.patient_id,
                 **detail)
    if state == "used":
        return
    party = party_of(session, invite)
    others = [i for i in party.live_invites(session) if i.id != invite.id]
    if party.row.status == "invited" and not others and detail.get("reason") != "resent":
        party.set_status(session, "roster", actor)


# -- the sweep -----------------------------------------------------------------------
def sweep(services, now: dt.datetime, batch: int = 500) -> int:
    """Expire overdue invites, then send due reminders; returns mails queued.  Runs under
    the deadline sweeper's lock; both queries use (state, time) indexes."""
    while True:
        with services.transaction() as session:
            rows = list(session.scalars(
                select(Invite).where(Invite.state == "live", Invite.expires_at <= now)
                .order_by(Invite.expires_at).limit(batch)))
            for inv in rows:
                end(session, inv, "expired", now, "sweeper")
        if len(rows) < batch:
            break
    sent = 0
    while True:
        with services.transaction() as session:
            rows = list(session.scalars(
                select(Invite).where(and_(Invite.state == "live", Invite.remind_at <= now,
                                          Invite.expires_at > now))
                .order_by(Invite.remind_at).limit(batch)))
            for inv in rows:
                sent += _remind(session, services, inv, now)
        if len(rows) < batch:
            break
    return sent


def _remind(session, services, inv: Invite, now: dt.datetime) -> int:
    patient = session.get(Patient, inv.patient_id)
    inv.remind_at = None
    party = party_of(session, inv).row
    if party.status != "invited":  # activated, suspended or revoked meanwhile
        end(session, inv, "void", now, "sweeper", reason=f"status {party.status}")
        return 0
    token = new_token()
    inv.reminder_token_hash, inv.reminded_at = hash_token(token), now
    _queue_mail(session, services, "invite_reminder", inv, patient, token)
    audit.record(session, "sweeper", "invite.reminded", "invite", inv.id, patient.id)
    return 1
