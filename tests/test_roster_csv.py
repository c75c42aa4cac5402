"""What both imports share (gateway.roster_csv): the header check and the update count."""
from __future__ import annotations

import types

from gateway import patients, proxies
from gateway.roster_csv import ImportReport, reader, update


def test_header_names_are_trimmed_and_a_bom_dropped():
    report = ImportReport()
    rows = reader("\ufeff a , b \n1,2\n", ("a", "b"), report)
    assert [dict(r) for r in rows] == [{"a": "1", "b": "2"}] and report.errors == []


def test_a_missing_column_is_reported_at_line_1_by_both_imports(services):
    report = ImportReport()
    assert reader("a,c\n1,2\n", ("a", "b", "d"), report) is None
    assert report.errors == [(1, "header lacks column(s): b, d")]
    with services.transaction() as session:
        for report in (patients.import_roster(session, "account_number,email\n1,x\n"),
                       proxies.import_proxies(session, "patient_account,email\n1,x\n")):
            assert report.errors[0][0] == 1 and "header lacks" in report.errors[0][1]
            assert report.added == 0


def test_update_sets_only_what_differs_and_counts_it():
    report, row = ImportReport(), types.SimpleNamespace(a=1, b="x")
    assert update(row, {"a": 1, "b": "x"}, report) == []
    assert update(row, {"b": "y", "a": 2}, report) == ["a", "b"]
    assert (row.a, row.b, report.updated, report.unchanged) == (2, "y", 1, 1)
