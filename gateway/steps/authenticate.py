"""Step: sender authentication.

A message whose From claims an enrolled patient but fails authentication is a spoofing
attempt: with ``require_aligned_auth`` it is refused (the uniform 550 5.7.1), otherwise it
is delivered to staff marked ``X-Portal-Sender-Auth: fail`` and NOT acknowledged to the
patient (who did not write it).  Either way the security address is told, and the real
patient is never sent a rejection.
"""
from __future__ import annotations

import hashlib

from gateway import audit, metrics, outbox
from gateway.auth.verdict import Verdict, from_upstream, verify
from gateway.decisions import REFUSED_SENDER, Reject


def verdict_for(ctx) -> Verdict:
    policy = ctx.services.cfg.policy
    domain = ctx.sender.rpartition("@")[2]
    if policy.auth_mode == "upstream":
        return from_upstream(ctx.msg, domain, policy.trusted_authserv_ids)
    if policy.auth_mode == "verify":
        return verify(ctx.inbound.raw, ctx.msg, domain, ctx.services.resolver)
    return Verdict("none", "auth-off")


def security_alert(services, patient_id: int, account: str, verdict: Verdict,
                   raw_sha256: str, source: str):
    """A follow-up that queues the alert to the security address in `session`."""
    def queue(session):
        s = services
        msg = s.notices.build(
            "security_alert", sender=s.addresses.header_address("Portal Gateway",
                                                                s.addresses.portal),
            to=s.cfg.routing.security, domain=s.addresses.domain,
            headers={"Auto-Submitted": "auto-generated"}, account_number=account,
            detail=verdict.detail, sha256=raw_sha256, source=source,
            refused=s.cfg.policy.require_aligned_auth)
        outbox.enqueue(session, s.addresses, msg, s.cfg.routing.security, "security_alert",
                       None, patient_id)
        audit.record(session, "auth", "message.spoofing", "patient", account, patient_id,
                     verdict=verdict.detail, sha256=raw_sha256)
    return queue


def authenticate_sender(ctx) -> None:
    ctx.auth = verdict_for(ctx)
    if ctx.auth.result != "fail":
        return
    metrics.auth_failure("sender")
    alert = security_alert(ctx.services, ctx.patient.id, ctx.patient.account_number, ctx.auth,
                           hashlib.sha256(ctx.inbound.raw).hexdigest(), ctx.inbound.source)
    if ctx.services.cfg.policy.require_aligned_auth:
        raise Reject(REFUSED_SENDER, "sender-auth-fail", followups=(alert,))
    alert(ctx.session)
