"""Completing an enrollment: the checks behind ``POST /enroll``, in one transaction.

Either everything is saved (patient active, Argon2id password hash, terms version and time,
invite burned) or nothing is, except the wrong-account-number counter: after
``MAX_ATTEMPTS`` wrong numbers the invite is ``locked`` and its link stops working.
Blocking: call it from a thread (asyncio.to_thread).
"""
from __future__ import annotations

import datetime as dt
import hmac
import logging
from dataclasses import dataclass, field

from argon2 import PasswordHasher

from gateway import audit
from gateway.enrollment import invites, passwords
from gateway.models import Patient

log = logging.getLogger("gateway.enrollment")

MAX_ATTEMPTS = 5
MIN_PASSWORD = 12
MAX_PASSWORD = 1024
_hasher = PasswordHasher()  # Argon2id, the library's current recommended parameters

# Why a link cannot be used, in words for the patient (the page adds the office phone).
CLOSED = {
    "unknown": "This enrollment link is not valid. Please check that you opened the whole "
               "link from our email, or call the office for a new invitation.",
    "used": "This enrollment link has already been used. If you enrolled, you can write "
            "to us now. If you did not, please call the office.",
    "expired": "This enrollment link has expired. Please call the office for a new "
               "invitation.",
    "void": "This enrollment link was replaced by a newer invitation. Please use the link "
            "in our most recent email.",
    "locked": "This enrollment link no longer works because a wrong account number was "
              "entered too many times. Please call the office for a new invitation.",
    "unavailable": "Enrollment through this link is not possible. Please call the office.",
}


@dataclass
class Form:
    account: str = ""
    password: str = ""
    confirm: str = ""
    agree: bool = False
    terms_version: str = ""

    def __repr__(self) -> str:  # never show the password, even in a traceback
        return f"Form(account=<{len(self.account)} chars>, agree={self.agree})"


@dataclass
class Outcome:
    closed: str | None = None  # a CLOSED key: the link cannot be used
    errors: dict[str, str] = field(default_factory=dict)  # field -> message
    email: str | None = None  # on success: the address the patient writes from

    @property
    def ok(self) -> bool:
        return self.closed is None and not self.errors


def link_state(services, token: str | None, now: dt.datetime) -> str:
    """What GET /enroll shows: 'live' (the form) or a CLOSED key."""
    with services.factory() as session:
        inv = invites.find(session, token)
        state = invites.status_of(inv, now)
        if state == "live":
            return _party_state(session, inv) or state
        return state


def link_is_proxy(services, token: str | None) -> bool:
    """Is this enrollment link a proxy's (the page then asks for the patient's number)?"""
    with services.factory() as session:
        inv = invites.find(session, token)
        return inv is not None and inv.proxy_id is not None


def _party_state(session, inv) -> str | None:
    """A CLOSED key when the invited party can no longer enroll, else None."""
    party = invites.party_of(session, inv).row
    if party.status not in ("invited", "roster"):
        return "used" if party.status == "active" else "unavailable"
    if inv.proxy_id is not None and session.get(Patient, inv.patient_id).status == "suspended":
        return "unavailable"
    return None


def _same_account(given: str, actual: str) -> bool:
    a = " ".join(given.split()).upper().encode()
    b = actual.strip().upper().encode()
    return hmac.compare_digest(a, b)


def _field_errors(form: Form, terms_version: str) -> dict[str, str]:
    errors = {}
    if len(form.password) < MIN_PASSWORD:
        errors["password"] = (f"Choose a password of at least {MIN_PASSWORD} characters "
                              f"(yours has {len(form.password)}).")
    elif len(form.password) > MAX_PASSWORD:
        errors["password"] = f"Choose a password of at most {MAX_PASSWORD} characters."
    elif (why := passwords.weakness(form.password)) is not None:
        errors["password"] = (f"That password is too easy to guess: {why}. Choose another; "
                              "a few unrelated words make a good one.")
    if not errors.get("password") and form.confirm != form.password:
        errors["confirm"] = "The two passwords do not match. Type the same password twice."
    if not form.agree:
        errors["agree"] = "To enroll, tick \u201cI agree\u201d after reading the terms."
    elif form.terms_version != terms_version:
        errors["agree"] = ("The terms have changed since this page was opened. Please read "
                           "them again and tick \u201cI agree\u201d.")
    return errors


def _check_account(session, inv, patient: Patient, form: Form, now, errors) -> str | None:
    """Adds an account error, counting wrong tries; returns 'locked' when the link dies."""
    if not form.account.strip():
        errors["account"] = "Enter your patient account number (it is on your statements)."
        return None
    if _same_account(form.account, patient.account_number):
        return None
    inv.failed_attempts += 1
    log.info("wrong account number", extra={"invite_id": inv.id,
                                            "attempt": inv.failed_attempts})
    if inv.failed_attempts >= MAX_ATTEMPTS:
        invites.end(session, inv, "locked", now, "enrollment", reason="wrong account numbers")
        return "locked"
    left = MAX_ATTEMPTS - inv.failed_attempts
    errors["account"] = ("That account number does not match our records. Check it on "
                         f"your statement ({left} {'try' if left == 1 else 'tries'} left "
                         "before this link stops working).")
    return None


def enroll(services, token: str | None, form: Form, terms_version: str,
           now: dt.datetime) -> Outcome:
    with services.transaction() as session:
        inv = invites.find(session, token, lock=True)
        state = invites.status_of(inv, now)
        if state != "live":
            return Outcome(closed=state)
        patient = session.get(Patient, inv.patient_id)
        closed = _party_state(session, inv)
        if closed:
            return Outcome(closed=closed)
        if patient.state.upper() not in {s.upper() for s in services.cfg.policy.allowed_states}:
            return Outcome(closed="unavailable")
        errors: dict[str, str] = {}
        if _check_account(session, inv, patient, form, now, errors) == "locked":
            return Outcome(closed="locked")
        errors.update(_field_errors(form, terms_version))
        if errors:
            return Outcome(errors=errors)
        party = invites.party_of(session, inv)
        _complete(session, inv, party, form, terms_version, now)
        return Outcome(email=party.row.email)


def _complete(session, inv, party: invites.Party, form: Form, terms_version: str,
              now) -> None:
    """The party's own password and terms, active, its other live links voided; a proxy's
    enrollment leaves the patient as it was."""
    row = party.row
    row.password_hash = _hasher.hash(form.password)
    row.terms_version, row.terms_accepted_at = terms_version, now
    party.set_status(session, "active", "enrollment")
    invites.end(session, inv, "used", now, "enrollment", terms_version=terms_version)
    for other in party.live_invites(session):
        if other.id != inv.id:
            invites.end(session, other, "void", now, "enrollment", reason="enrolled")
    audit.record(session, "enrollment", f"{party.kind}.enrolled", party.kind,
                 party.audit_id, party.patient_id, invite_id=inv.id,
                 terms_version=terms_version)
    log.info("proxy enrollment completed" if party.is_proxy else "enrollment completed",
             extra={"invite_id": inv.id, f"{party.kind}_id": row.id})
