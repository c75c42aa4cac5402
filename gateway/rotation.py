"""`portal-gateway keys rotate`: re-seal every encrypted value under the current key.

It runs beside a live gateway: rows are read in id order in batches (one short
transaction each), and each value is written back only if it is still the one read
(``WHERE id = ? AND col = <old ciphertext>``), so a row the gateway changed meanwhile is
left to the next pass.  Passes repeat until one finds nothing to re-seal.  Values written
before encryption existed are sealed too.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import LargeBinary, Text, bindparam, func, select, type_coerce, update

from gateway import crypto
from gateway.models import Base
from gateway.sealed import EncryptedBytes, EncryptedText


def encrypted_columns() -> dict:
    """table -> [column] for every column of an encrypted type."""
    found: dict = {}
    for table in Base.metadata.sorted_tables:
        cols = [c for c in table.columns if isinstance(c.type, (EncryptedText, EncryptedBytes))]
        if cols:
            found[table] = cols
    return found


def _raw(col):
    return type_coerce(col, LargeBinary if isinstance(col.type, EncryptedBytes) else Text)


def _reseal(col, value, current: str):
    """The new stored form of `value`, or None if it is already sealed under `current`."""
    if value is None or len(value) == 0 or crypto.stored_key_id(value) == current:
        return None
    aad = col.type.aad
    if isinstance(col.type, EncryptedBytes):
        value = bytes(value)
        plain = crypto.decrypt_bytes(value, aad) if value.startswith(crypto.BPREFIX) else value
        return crypto.encrypt_bytes(plain, aad)
    plain = crypto.decrypt_text(value, aad) if value.startswith(crypto.PREFIX) else value
    return crypto.encrypt_text(plain, aad)


@dataclass
class RotationReport:
    key_id: str
    values: int = 0
    rows_seen: int = 0
    passes: int = 0
    per_table: dict = field(default_factory=dict)


def _batch(session, table, cols, after: int, size: int, current: str) -> tuple[int, int, int]:
    """Re-seal one batch; returns (last id seen, rows seen, values re-sealed)."""
    rows = session.execute(select(table.c.id, *[_raw(c).label(c.name) for c in cols])
                           .where(table.c.id > after).order_by(table.c.id).limit(size)).all()
    changed = 0
    for col in cols:
        params = []
        for row in rows:
            old = getattr(row, col.name)
            new = _reseal(col, old, current)
            if new is not None:
                params.append({"_id": row.id, "_old": old, "_new": new})
        if params:  # compare-and-set: a value changed since it was read stays for next pass
            raw = _raw(col).type
            session.execute(update(table).where(
                table.c.id == bindparam("_id"),
                _raw(col) == bindparam("_old", type_=raw)).values(
                {col.name: bindparam("_new", type_=raw)}), params)
            changed += len(params)
    return (rows[-1].id if rows else after), len(rows), changed


def rotate(services, batch: int = 500, progress=None, max_passes: int = 5) -> RotationReport:
    """Re-seal everything under the current key; `progress(done, total)` after each batch."""
    current = crypto.ring().current
    report = RotationReport(key_id=current)
    tables = encrypted_columns()
    with services.transaction() as session:
        total = sum(session.scalar(select(func.count()).select_from(t)) or 0 for t in tables)
    while report.passes < max_passes:
        report.passes += 1
        changed_this_pass, done = 0, 0
        for table, cols in tables.items():
            after = 0
            while True:
                with services.transaction() as session:
                    after, seen, changed = _batch(session, table, cols, after, batch, current)
                done += seen
                changed_this_pass += changed
                report.per_table[table.name] = report.per_table.get(table.name, 0) + changed
                if progress is not None and seen:
                    progress(min(done, total), total)
                if seen < batch:
                    break
        report.values += changed_this_pass
        report.rows_seen = done
        if changed_this_pass == 0:
            break
    return report
