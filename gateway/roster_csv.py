"""What the roster import and the proxies import share: the report, the header check and
the update of a row that is already there (gateway.patients, gateway.proxies)."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field


@dataclass
class ImportReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)  # (line, problem)


def reader(text: str, columns: tuple[str, ...], report: ImportReport) -> csv.DictReader | None:
    """Rows of a CSV with a header line (names trimmed; a byte-order mark dropped), or None
    with the problem reported at line 1 when the header lacks one of `columns`."""
    rows = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = [h.strip() for h in (rows.fieldnames or [])]
    absent = [c for c in columns if c not in header]
    if absent:
        report.errors.append((1, f"header lacks column(s): {', '.join(absent)}"))
        return None
    rows.fieldnames = header
    return rows


def update(obj, values: dict, report: ImportReport) -> list[str]:
    """Set the values that differ on `obj` and count the row as updated or unchanged;
    returns the names of the changed fields, sorted (empty: unchanged)."""
    changed = {k: v for k, v in values.items() if getattr(obj, k) != v}
    for key, value in changed.items():
        setattr(obj, key, value)
    if changed:
        report.updated += 1
    else:
        report.unchanged += 1
    return sorted(changed)
