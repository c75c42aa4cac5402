"""The patient directory: look-ups, roster import, status changes."""
from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from gateway import audit, roster_csv
from gateway.addresses import normalize
from gateway.language import normalize_code
from gateway.models import Patient, Proxy, address_index

log = logging.getLogger("gateway.patients")
ImportReport = roster_csv.ImportReport

STATUSES = ("roster", "invited", "active", "suspended")
COLUMNS = ("account_number", "first_name", "last_name", "email", "state")
# language: ISO 639-1 code of the language the patient reads; birth_date: YYYY-MM-DD (a
# patient aged 12-17 gets the minor defaults for proxies, gateway.proxy_scope)
OPTIONAL_COLUMNS = ("language", "birth_date")


class AddressTaken(Exception):
    """The address already belongs to another patient (one address, one patient)."""


def by_email(session: Session, address: str | None) -> Patient | None:
    norm = normalize(address) if address else None
    if not norm:
        return None
    return session.scalar(_BY_INDEX, {"index": address_index(norm)})


_BY_INDEX = select(Patient).where(Patient.email_index == bindparam("index"))  # built once


# -- one address belongs to one person (a patient or a proxy) ---------------------------
def patient_with_address(session: Session, address: str | None,
                         other_than: str | None = None) -> str | None:
    """The account of the patient who has this address (but account `other_than`)."""
    index = address_index(address)
    if not index:
        return None
    q = select(Patient.account_number).where(Patient.email_index == index)
    if other_than is not None:
        q = q.where(Patient.account_number != other_than)
    return session.scalar(q.limit(1))


def proxy_with_address(session: Session, address: str | None) -> int | None:
    """The id of a proxy who has this address (the oldest row)."""
    index = address_index(address)
    if not index:
        return None
    return session.scalar(select(Proxy.id).where(Proxy.email_index == index)
                          .order_by(Proxy.id).limit(1))


def set_email(session: Session, patient: Patient, address: str | None) -> None:
    """Give `patient` this address (None: none); AddressTaken if another patient has it."""
    other = patient_with_address(session, address, patient.account_number)
    if other is not None:
        raise AddressTaken(f"the address belongs to patient {other} already")
    patient.email = normalize(address) if address else None  # sets email_index too


def address_clash(session: Session, patient: Patient) -> str | None:
    """The account of another patient with the same address, if any."""
    return patient_with_address(session, patient.email, patient.account_number)


def fill_email_index(session: Session) -> int:
    """Index addresses stored before the index existed.  An address a second patient
    shares stays unindexed (that patient gets no mail and cannot be activated) and is
    logged by patient id, so someone gives one of them another address."""
    rows = session.scalars(select(Patient).where(Patient.email.is_not(None),
                                                 Patient.email_index.is_(None))
                           .order_by(Patient.id)).all()
    taken = set(session.scalars(select(Patient.email_index).where(
        Patient.email_index.is_not(None))))
    filled = 0
    for patient in rows:
        index = address_index(patient.email)
        if index in taken:
            log.warning("patient address shared with another patient, not indexed",
                        extra={"patient_id": patient.id})
            session.expire(patient, ["email_index"])
            continue
        patient.email_index = index
        taken.add(index)
        filled += 1
    return filled


def by_account(session: Session, account: str) -> Patient | None:
    return session.scalar(select(Patient).where(Patient.account_number == account.strip()))


def is_admissible(patient: Patient | None, allowed_states) -> bool:
    """Only active patients, living in an allowed state, with a deliverable address."""
    return (patient is not None and patient.status == "active"
            and patient.state.upper() in {s.upper() for s in allowed_states}
            and not patient.undeliverable)


def _row_error(row: dict) -> str | None:
    missing = [c for c in COLUMNS if c != "email" and not (row.get(c) or "").strip()]
    if missing:
        return f"missing {', '.join(missing)}"
    state = row["state"].strip()
    if len(state) != 2 or not state.isalpha():
        return f"state must be a two-letter code, got {state!r}"
    email = (row.get("email") or "").strip()
    if email and not normalize(email):
        return f"invalid email address {email!r}"
    language = (row.get("language") or "").strip()
    if language and not normalize_code(language):
        return f"language must be a two-letter ISO 639-1 code such as 'es', got {language[:20]!r}"
    return _birth_date_error((row.get("birth_date") or "").strip())


def _birth_date_error(value: str) -> str | None:
    if not value:
        return None
    try:
        born = dt.date.fromisoformat(value)
    except ValueError:
        born = None
    if born is None or len(value) != 10 or not value.isascii():
        return f"birth_date must be a date written YYYY-MM-DD, got {value[:20]!r}"
    if born > dt.date.today() or born.year < 1900:
        return f"birth_date {value} is not a plausible birth date"
    return None


def import_roster(session: Session, text: str, actor: str = "cli",
                  progress=None) -> ImportReport:
    """Idempotent roster import; a bad row is reported by its line, good rows go in.
    `progress(done, total)` is called every 500 rows and at the end."""
    report = ImportReport()
    total = max(text.count("\n") - 1, 0)
    reader = roster_csv.reader(text, COLUMNS, report)
    if reader is None:
        return report
    seen: set[str] = set()
    for row in reader:
        line = reader.line_num
        problem = _row_error(row)
        acct = (row.get("account_number") or "").strip()
        if not problem and acct in seen:
            problem = f"account {acct} appears twice in this file"
        if problem:
            report.errors.append((line, problem))
            continue
        clash = _address_clash(session, acct, row)
        if clash:
            report.errors.append((line, clash))
            continue
        seen.add(acct)
        _upsert(session, row, report, actor)
        done = report.added + report.updated + report.unchanged + len(report.errors)
        if progress and done % 500 == 0:
            progress(done, total)
    if progress:
        progress(total, total)
    return report


def _address_clash(session: Session, acct: str, row: dict) -> str | None:
    """One address, one patient: the problem if another account already has it."""
    address = (row.get("email") or "").strip()
    other = patient_with_address(session, address, acct)
    if other is not None:
        return f"the address of account {acct} belongs to patient {other} already " \
               "(one address, one patient)"
    proxy = proxy_with_address(session, address)
    if proxy is not None:
        return f"the address of account {acct} is the address of proxy {proxy}; a patient " \
               "and a proxy cannot share an address"
    return None


def _upsert(session: Session, row: dict, report: ImportReport, actor: str) -> None:
    acct = row["account_number"].strip()
    values = {"first_name": " ".join(row["first_name"].split()),
              "last_name": " ".join(row["last_name"].split()),
              "email": normalize(row["email"]) if (row.get("email") or "").strip() else None,
              "state": row["state"].strip().upper()}
    if "language" in row:  # a roster without the column leaves the stored language alone
        values["language"] = normalize_code(row["language"])
    if "birth_date" in row:  # likewise the birth date
        values["birth_date"] = (row["birth_date"] or "").strip() or None
    patient = by_account(session, acct)
    if patient is None:
        patient = Patient(account_number=acct, status="roster", **values)
        session.add(patient)
        session.flush()
        report.added += 1
        audit.record(session, actor, "patient.imported", "patient", acct, patient.id)
        return
    changed = roster_csv.update(patient, values, report)
    if not changed:
        return
    if "email" in changed:  # a corrected address is worth trying again
        patient.undeliverable, patient.hard_bounces = False, 0
    audit.record(session, actor, "patient.updated", "patient", acct, patient.id,
                 fields=changed)


def set_status(session: Session, patient: Patient, status: str, actor: str,
               reason: str | None = None) -> None:
    old = patient.status
    patient.status = status
    patient.suspend_reason = reason if status == "suspended" else None
    audit.record(session, actor, f"patient.{status}", "patient", patient.account_number,
                 patient.id, previous=old)
