"""One address belongs to one person: the shared look-ups behind the roster import, the
proxies import, invites and `patients activate` (gateway.patients), and the shared
email-validator check (gateway.addresses.checked).  SQLite and PostgreSQL."""
from __future__ import annotations

import pytest

from gateway import patients
from gateway.addresses import AddressUnusable, checked, normalize
from gateway.models import Patient
from tests.helpers import add_patient, add_proxy


def test_an_address_is_found_in_any_written_form(services):
    add_patient(services, account="1001", email="ana.lopez@example.com")
    pid = add_patient(services, account="1002", email="bo@example.com")
    proxy = add_proxy(services, pid, email="mom@example.net")
    with services.factory() as session:
        for form in ("ana.lopez@example.com", " Ana.Lopez@EXAMPLE.com "):
            assert patients.patient_with_address(session, form) == "1001"
        assert patients.patient_with_address(session, "Ana.Lopez@example.com",
                                             "1001") is None
        assert patients.patient_with_address(session, "ana.lopez@example.com", "1002") == "1001"
        assert patients.proxy_with_address(session, "MOM@Example.NET") == proxy
        assert patients.proxy_with_address(session, "ana.lopez@example.com") is None
        for nothing in (None, "", "   "):
            assert patients.patient_with_address(session, nothing) is None
            assert patients.proxy_with_address(session, nothing) is None


def test_set_email_refuses_another_patients_address(services):
    add_patient(services, account="1001", email="ana@example.com")
    add_patient(services, account="1002", email="bo@example.com")
    with services.transaction() as session:
        bo = patients.by_account(session, "1002")
        with pytest.raises(patients.AddressTaken, match="patient 1001"):
            patients.set_email(session, bo, "ANA@example.com")
        patients.set_email(session, bo, " Bo.New@Example.com")
        patients.set_email(session, bo, "bo.new@example.com")  # its own address again
    with services.factory() as session:
        assert session.get(Patient, bo.id).email == "bo.new@example.com"


@pytest.mark.parametrize("hostile", ["not-an-address", "a@b", "ana@@example.com",
                                     "ana@example.com\r\nBcc: x@evil.test", "", "\x00@x.com"])
def test_checked_says_why_and_normalize_says_none(hostile):
    with pytest.raises(AddressUnusable) as refused:
        checked(hostile)
    assert str(refused.value)
    assert normalize(hostile) is None


def test_checked_normalises_like_normalize():
    for given in ("Ana.Lopez@Example.COM", "  bo@example.com ", "jos\u00e9@example.com"):
        assert checked(given) == normalize(given) == given.strip().lower()
