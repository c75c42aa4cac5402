"""Patient and proxy invites are one flow (gateway.enrollment.invites.issue and Party):
sending again voids the earlier link and keeps the party invited, the new link enrolls the
party and only the party, the old link says it was replaced.  SQLite and PostgreSQL."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from gateway.enrollment import enroll as enrollment
from gateway.enrollment import invites, proxy_invites
from gateway.models import Audit, Invite, Patient, Proxy
from tests.helpers import add_patient, add_proxy
from tests.test_invites import T0, _form, mails, token_in


def _invite(services, kind: str, row_id: int, now: dt.datetime) -> None:
    with services.transaction() as session:
        if kind == "proxy":
            proxy_invites.create(session, services, session.get(Proxy, row_id), now=now)
        else:
            invites.create(session, services, session.get(Patient, row_id), now=now)


@pytest.mark.parametrize("kind", ["patient", "proxy"])
def test_resend_voids_the_old_link_and_the_new_one_enrolls_only_the_party(services, kind):
    patient_id = add_patient(services, account="1001",
                             status="roster" if kind == "patient" else "active")
    row_id = patient_id if kind == "patient" else add_proxy(services, patient_id,
                                                            status="roster")
    template = "invite" if kind == "patient" else "proxy_invite"
    _invite(services, kind, row_id, T0)
    _invite(services, kind, row_id, T0 + dt.timedelta(hours=1))
    old, new = (token_in(body) for _, body in mails(services, template))
    model = Patient if kind == "patient" else Proxy
    with services.factory() as session:
        assert session.get(model, row_id).status == "invited"
        states = session.scalars(select(Invite.state).order_by(Invite.id)).all()
    assert states == ["void", "live"]
    later = T0 + dt.timedelta(hours=2)
    assert enrollment.link_state(services, old, later) == "void"
    outcome = enrollment.enroll(services, new, _form(account="1001"), "v1", later)
    assert outcome.ok, outcome
    with services.factory() as session:
        assert session.get(model, row_id).status == "active"
        assert session.get(model, row_id).password_hash
        if kind == "proxy":
            patient = session.get(Patient, patient_id)
            assert patient.status == "active" and patient.password_hash is None
        actions = session.scalars(select(Audit.action).order_by(Audit.id)).all()
    assert actions.count("invite.sent") == 2 and actions.count("invite.void") == 1
    assert f"{kind}.enrolled" in actions and "invite.used" in actions
    assert enrollment.link_state(services, new, later) == "used"
