"""The proxy directory: parents, guardians and caregivers who write for a patient.

``import_proxies`` reads PROXIES.csv (``patient_account, first_name, last_name, email,
relation, scope``): idempotent, keyed by patient and address; a bad row is reported by its
line and the good rows go in.  A row is bad when its patient account is unknown, a name
could act as a spreadsheet formula or holds control characters, the address is not plain
syntax (look-alike and full-width forms included) or belongs to a patient, the relation is
not a few plain words, or a scope word is not a category id.  An empty scope means the
default (gateway.proxy_scope), decided when the proxy writes, so it follows the patient's
age.  Revoking is final for that row: a revoked proxy is refused like a stranger and a
re-import does not bring it back.
"""
from __future__ import annotations

import re
import unicodedata

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway import audit, roster_csv
from gateway.patients import patient_with_address
from gateway.auth.strict import strict_normalize
from gateway.classification import CATEGORIES
from gateway.clock import utcnow
from gateway.models import Patient, Proxy, address_index

COLUMNS = ("patient_account", "first_name", "last_name", "email", "relation", "scope")
STATUSES = ("roster", "invited", "active", "revoked")
MAX_NAME = 100
_RELATION = re.compile(r"^[^\W\d_]+(?:[ '\-][^\W\d_]+){0,4}$")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
ImportReport = roster_csv.ImportReport


def parse_scope(text: str | None) -> tuple[str, ...] | None:
    """Scope words (spaces or commas between them) as category ids; None when empty;
    ValueError naming the first word that is not a category id."""
    words = [w for w in re.split(r"[\s,;]+", (text or "").strip().lower()) if w]
    for word in words:
        if word not in CATEGORIES:
            raise ValueError(f"scope word {word[:40]!r} is not a category "
                             f"(known: {', '.join(CATEGORIES)})")
    return tuple(dict.fromkeys(words)) or None


def _name_error(column: str, value: str) -> str | None:
    if not value.strip():
        return f"missing {column}"
    if len(value) > MAX_NAME:
        return f"{column} is longer than {MAX_NAME} characters"
    if value.lstrip(" ").startswith(_FORMULA_START):
        return f"{column} starts with {value.lstrip(' ')[0]!r} (a spreadsheet formula); " \
               "write the name without it"
    if any(unicodedata.category(c) in ("Cc", "Cf") for c in value):
        return f"{column} holds control or invisible characters"
    return None


def row_error(row: dict) -> str | None:
    """What is wrong with one row on its own (before the database is asked)."""
    if not (row.get("patient_account") or "").strip():
        return "missing patient_account"
    for column in ("first_name", "last_name"):
        problem = _name_error(column, row.get(column) or "")
        if problem:
            return problem
    email = (row.get("email") or "").strip()
    if not email:
        return "missing email"
    if strict_normalize(email) is None:
        return f"email {email[:80]!r} is not a plain address (no look-alike or full-width " \
               "characters, comments or display names)"
    relation = " ".join((row.get("relation") or "").split())
    if not _RELATION.match(relation) or len(relation) > 40:
        return "relation must be a few plain words such as 'mother' or 'legal guardian'"
    try:
        parse_scope(row.get("scope"))
    except ValueError as e:
        return str(e)
    return None


def import_proxies(session: Session, text: str, actor: str = "cli") -> ImportReport:
    report = ImportReport()
    reader = roster_csv.reader(text, COLUMNS, report)
    if reader is None:
        return report
    seen: set[tuple[str, str]] = set()
    for row in reader:
        line = reader.line_num
        problem = row_error(row) or _database_error(session, row, seen)
        if problem:
            report.errors.append((line, problem))
            continue
        _upsert(session, row, report, actor)
    return report


def _database_error(session: Session, row: dict, seen: set) -> str | None:
    account = row["patient_account"].strip()
    address = strict_normalize(row["email"].strip())
    if (account, address) in seen:
        return f"the proxy {address} of patient {account} appears twice in this file"
    seen.add((account, address))
    patient = session.scalar(select(Patient).where(Patient.account_number == account))
    if patient is None:
        return f"no patient with account {account[:64]} in the roster (import it first)"
    owner = patient_with_address(session, address)
    if owner is not None:
        return f"the address is patient {owner}'s own address; a proxy needs an address " \
               "of its own"
    return None


def _upsert(session: Session, row: dict, report: ImportReport, actor: str) -> None:
    account = row["patient_account"].strip()
    patient = session.scalar(select(Patient).where(Patient.account_number == account))
    address = strict_normalize(row["email"].strip())
    scope = parse_scope(row.get("scope"))
    values = {"first_name": " ".join(row["first_name"].split()),
              "last_name": " ".join(row["last_name"].split()),
              "relation": " ".join(row["relation"].split()).lower(),
              "scope": " ".join(scope) if scope else None}
    proxy = session.scalar(select(Proxy).where(Proxy.patient_id == patient.id,
                                               Proxy.email_index == address_index(address)))
    if proxy is None:
        proxy = Proxy(patient_id=patient.id, email=address, status="roster", **values)
        session.add(proxy)
        session.flush()
        report.added += 1
        audit.record(session, actor, "proxy.imported", "proxy", proxy.id, patient.id)
        return
    changed = roster_csv.update(proxy, values, report)
    if changed:
        audit.record(session, actor, "proxy.updated", "proxy", proxy.id, patient.id,
                     fields=changed)


# -- look-ups ---------------------------------------------------------------------------
def by_address(session: Session, address: str | None) -> list[Proxy]:
    """Every proxy row with this address (any status), oldest first."""
    index = address_index(address) if address else None
    if not index:
        return []
    return list(session.scalars(select(Proxy).where(Proxy.email_index == index)
                                .order_by(Proxy.id)))


def find(session: Session, key: str) -> list[Proxy]:
    """Proxies named by id (a number) or by address (every row with it)."""
    key = (key or "").strip()
    if key.isdigit():
        proxy = session.get(Proxy, int(key))
        return [proxy] if proxy is not None else []
    return by_address(session, strict_normalize(key) or key)


def revoke(session: Session, proxy: Proxy, actor: str = "cli") -> bool:
    """Revoke a proxy (final); its live invites are voided.  False if it already was."""
    from gateway.enrollment import invites
    if proxy.status == "revoked":
        return False
    previous, proxy.status, proxy.revoked_at = proxy.status, "revoked", utcnow()
    for inv in invites.live_proxy_invites(session, proxy.id):
        invites.end(session, inv, "void", utcnow(), actor, reason="proxy revoked")
    audit.record(session, actor, "proxy.revoked", "proxy", proxy.id, proxy.patient_id,
                 previous=previous)
    return True


def set_status(session: Session, proxy: Proxy, status: str, actor: str) -> None:
    old, proxy.status = proxy.status, status
    audit.record(session, actor, f"proxy.{status}", "proxy", proxy.id, proxy.patient_id,
                 previous=old)
