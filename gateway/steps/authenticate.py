"""Step: sender authentication, and what it allows (decided at end of DATA).

``portal@`` needs an aligned pass (SPF or DKIM aligned with the From domain);
``reply+TOKEN`` needs DMARC not to fail (the token is the second factor); ``staff+TOKEN``
needs an aligned pass for the staff domain or AUTH on the submission listener.  DNS trouble
is a ``451 4.3.0`` (the sender retries), never a pass.  A message that fails while claiming
an enrolled patient's address is a spoofing attempt: refused, the security address told,
the real patient sent nothing.  With ``auth_mode = "off"`` (loopback quick start only)
nothing is checked and the envelope must equal the header From.
"""
from __future__ import annotations

import hashlib

from gateway import audit, metrics, outbox
from gateway.notice_claims import claim_notice
from gateway.auth.verdict import Verdict, from_upstream, verify
from gateway.decisions import Reject

DNS_TEMPFAIL = "451 4.3.0 Sender authentication is temporarily unavailable; try again later"


def verdict_for(ctx) -> Verdict:
    policy = ctx.services.cfg.policy
    domain = ctx.sender.rpartition("@")[2]
    if policy.auth_mode == "upstream":
        return from_upstream(ctx.msg, domain, policy.trusted_authserv_ids,
                             policy.trusted_received_hosts or policy.trusted_authserv_ids)
    if policy.auth_mode == "verify":
        inbound = ctx.inbound
        return verify(inbound.raw, ctx.msg, domain, ctx.services.resolver,
                      client_ip=inbound.client_ip, mail_from=inbound.mail_from,
                      helo=inbound.helo)
    return Verdict("none", "auth-off")


def authenticate_sender(ctx) -> None:
    """Step: the verdict for the From domain; a DNS failure is a temporary refusal."""
    if ctx.inbound.authenticated_user:
        ctx.auth = Verdict("pass", "submission-auth")
        return
    found = ctx.verdict  # found before the transaction (gateway.steps.prefetch)
    ctx.auth = found[1] if found and found[0] == ctx.sender else verdict_for(ctx)
    if ctx.auth.result == "temperror":
        raise Reject(DNS_TEMPFAIL, "auth-temperror")
    if ctx.auth.result == "fail":
        metrics.auth_failure("sender")


def authenticated(ctx) -> bool:
    """May this message be admitted, given its verdict and the address it was sent to?
    Sets ``ctx.unverified`` for mail let in without authentication (never acknowledged,
    never counted against the patient's rate)."""
    policy = ctx.services.cfg.policy
    result = ctx.auth.result
    if policy.auth_mode == "off" or result == "pass":
        return True
    if result != "none":
        return False
    if ctx.local.purpose == "reply":
        return True  # DMARC did not fail; the live token is the second factor
    if ctx.local.purpose == "portal" and not policy.require_aligned_auth:
        ctx.unverified = True
        return True
    return False


def spoof_alert(ctx, patient):
    return security_alert(ctx.services, patient.id, patient.account_number, ctx.auth,
                          hashlib.sha256(ctx.inbound.raw).hexdigest(), ctx.inbound.source)


def security_alert(services, patient_id: int, account: str, verdict: Verdict,
                   raw_sha256: str, source: str):
    """A follow-up f(session): an audit row for every attempt, and an alert to the security
    address at most once per patient and clock hour (a forger cannot flood the mailbox)."""
    def queue(session):
        s = services
        audit.record(session, "auth", "message.spoofing", "patient", account, patient_id,
                     verdict=verdict.detail, sha256=raw_sha256)
        if not claim_notice(session, s.cfg.routing.security, f"spoof:{patient_id}",
                            per_hour=True):
            return
        msg = s.notices.build(
            "security_alert", sender=s.addresses.header_address("Portal Gateway",
                                                                s.addresses.portal),
            to=s.cfg.routing.security, domain=s.addresses.domain,
            headers={"Auto-Submitted": "auto-generated"}, account_number=account,
            detail=verdict.detail, sha256=raw_sha256, source=source, refused=True)
        outbox.enqueue(session, s.addresses, msg, s.cfg.routing.security, "security_alert",
                       None, patient_id)
    return queue
