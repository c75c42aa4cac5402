"""Invites for proxies: the patients' invite flow (single-use link, stored as a hash,
reminder, expiry) for a proxy row.  The proxy opens the same enrollment page, enters the
patient's account number and chooses a password of its own; the patient's own status and
invites are left alone.  A revoked proxy cannot be invited; neither can a proxy whose
patient is suspended or lives outside the allowed states."""
from __future__ import annotations

import datetime as dt

from gateway import proxies
from gateway.clock import utcnow
from gateway.enrollment import invites
from gateway.enrollment.invites import InviteRefused
from gateway.models import Invite, Patient, Proxy


def check_proxy(cfg, proxy: Proxy, patient: Patient) -> None:
    label = f"proxy {proxy.id}"
    if proxy.status == "revoked":
        raise InviteRefused(f"{label} is revoked; import it under a new address instead")
    if proxy.status == "active":
        raise InviteRefused(f"{label} is already enrolled (active)")
    if patient.status == "suspended":
        raise InviteRefused(f"{label}'s patient {patient.account_number} is suspended")
    served = invites.states_served_elsewhere(cfg, patient)
    if served:
        raise InviteRefused(f"{label}'s patient {patient.account_number} lives in "
                            f"{patient.state}; the portal serves only {served}")


def create(session, services, proxy: Proxy, now: dt.datetime | None = None,
           actor: str = "cli") -> tuple[Invite, str]:
    """Void the proxy's older invites, store a new one and queue its mail; the caller
    commits.  Returns (invite, raw token); raises InviteRefused."""
    patient = session.get(Patient, proxy.patient_id)
    check_proxy(services.cfg, proxy, patient)
    return invites.issue(session, services, invites.Party(proxy), patient, proxy.email,
                         now or utcnow(), actor)


def invite(services, key: str, actor: str = "cli") -> list[Invite]:
    """Invite the proxy (or proxies) named by id or address, in one transaction."""
    with services.transaction() as session:
        rows = proxies.find(session, key)
        if not rows:
            raise InviteRefused(f"no proxy {key!r} (give its id or address; see proxies list)")
        waiting = [p for p in rows if p.status in ("roster", "invited")] or rows[:1]
        made = [create(session, services, proxy, actor=actor)[0] for proxy in waiting]
    services.committed()
    return made
