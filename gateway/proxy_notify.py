"""Which proxies get a copy of a portal notification.

A notification's kind maps to a category (``[notifications] categories``); a proxy gets
its own copy when that category is within its scope (gateway.proxy_scope).  For a patient
aged 12-17 (or of unknown age) no results kind (results are out of a minor's proxy scope)
and no kind in ``[notifications] confidential_kinds`` goes to a proxy.  A kind with no
category goes to the patient only.  Only active proxies get copies.
"""
from __future__ import annotations

from sqlalchemy import select

from gateway.clock import utcnow
from gateway.models import Proxy
from gateway.proxy_scope import decide


def copies_for_proxies(cfg, session, patient, kind: str) -> list:
    mapping = {k.lower(): v for k, v in cfg.notifications.categories.items()}
    category = mapping.get(kind.lower())
    if category is None:
        return []
    confidential = {k.lower() for k in cfg.notifications.confidential_kinds}
    topics = ("notification-kind",) if kind.lower() in confidential else ()
    rows = session.scalars(select(Proxy).where(Proxy.patient_id == patient.id,
                                               Proxy.status == "active").order_by(Proxy.id))
    today = utcnow().date()
    return [p for p in rows if decide(p, patient.birth_date, category, topics, today).within]
