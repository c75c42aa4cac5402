"""Sender authentication: spoofed patients are caught; From-header tricks refused."""
from __future__ import annotations

import email
import email.policy

import dkim
import pytest
from sqlalchemy import func, select

from gateway.app import Gateway
from gateway.auth.resolver import StaticResolver
from gateway.config import load_config
from gateway.models import Message
from gateway.services import Services
from tests.conftest import maildir_files, wait_for_mail, write_config
from tests.helpers import add_patient, dkim_keypair, patient_mail, smtp_send

PORTAL = "portal@portal.example.org"
REFUSAL = ("5.7.1 This address accepts mail only from enrolled portal patients; "
           "please call the office")


@pytest.fixture
async def start(tmp_path, db_url, config):  # `config` migrates the database
    gateways = []

    async def make(resolver=None, **policy):
        cfg = load_config(write_config(tmp_path, db_url), overrides={"policy": policy})
        services = Services.create(cfg)
        if resolver is not None:
            services.resolver = resolver
        gw = Gateway(services, inbound_port=0, submission_port=0, http_port=0)
        await gw.start()
        gateways.append(gw)
        add_patient(services)
        return gw
    yield make
    for gw in gateways:
        await gw.stop(deadline=5)
        gw.s.close()


def read(path):
    return email.message_from_bytes(path.read_bytes(), policy=email.policy.default)


def stored(gw) -> int:
    with gw.s.factory() as session:
        return session.scalar(select(func.count()).select_from(Message))


UPSTREAM = {"auth_mode": "upstream", "trusted_authserv_ids": ["mx.practice.example.org"]}


async def test_upstream_dmarc_fail_is_refused_and_reported(start):
    gw = await start(require_aligned_auth=True, **UPSTREAM)
    msg = patient_mail(Authentication_Results="mx.practice.example.org; dmarc=fail "
                       "header.from=example.com")
    result = await smtp_send(gw.inbound_port, "ana@example.com", [PORTAL], msg.as_bytes())
    assert result == ("DATA", 550, REFUSAL)
    alert = read((await wait_for_mail(gw.s.cfg.maildir_root,
                                      "security@practice.example.org"))[0])
    assert "1001" in alert["Subject"] and "dmarc-fail" in alert.get_content()
    assert "Can I move" not in alert.get_content()  # no message content in the alert
    assert maildir_files(gw.s.cfg.maildir_root, "ana@example.com") == []
    assert stored(gw) == 0


async def test_authentication_results_from_others_are_ignored(start):
    gw = await start(require_aligned_auth=True, **UPSTREAM)
    forged = patient_mail()
    forged["Authentication-Results"] = "mx.practice.example.org; dmarc=fail"
    forged["Authentication-Results"] = "evil.example; dmarc=pass header.from=example.com"
    result = await smtp_send(gw.inbound_port, "ana@example.com", [PORTAL], forged.as_bytes())
    assert result == ("DATA", 550, REFUSAL)
    only_untrusted = patient_mail(Authentication_Results="evil.example; dmarc=fail")
    result = await smtp_send(gw.inbound_port, "ana@example.com", [PORTAL],
                             only_untrusted.as_bytes())
    assert result[:2] == ("DATA", 250)  # an untrusted header has no say either way


async def test_without_require_spoof_reaches_staff_marked_and_is_not_acknowledged(start):
    gw = await start(require_aligned_auth=False, **UPSTREAM)
    msg = patient_mail(Authentication_Results="mx.practice.example.org; dmarc=fail")
    result = await smtp_send(gw.inbound_port, "ana@example.com", [PORTAL], msg.as_bytes())
    assert result[:2] == ("DATA", 250)
    root = gw.s.cfg.maildir_root
    staff = read((await wait_for_mail(root, "frontdesk@practice.example.org"))[0])
    assert staff["X-Portal-Sender-Auth"] == "fail"
    await wait_for_mail(root, "security@practice.example.org")
    assert maildir_files(root, "ana@example.com") == []
    good = patient_mail(Authentication_Results="mx.practice.example.org; dkim=pass "
                        "header.d=example.com; dmarc=pass")
    await smtp_send(gw.inbound_port, "ana@example.com", [PORTAL], good.as_bytes())
    staff = read((await wait_for_mail(root, "frontdesk@practice.example.org", 2))[1])
    assert staff["X-Portal-Sender-Auth"] == "pass"
    await wait_for_mail(root, "ana@example.com")


async def test_verify_mode_dkim_and_dmarc(start, tmp_path):
    key, public = dkim_keypair(tmp_path)
    private = key.read_bytes()
    resolver = StaticResolver({"s1._domainkey.example.com": [public],
                               "_dmarc.example.com": [b"v=DMARC1; p=reject"]})
    gw = await start(resolver=resolver, auth_mode="verify", require_aligned_auth=True)
    raw = patient_mail().as_bytes().replace(b"\n", b"\r\n")
    signed = dkim.sign(raw, b"s1", b"example.com", private,
                       include_headers=[b"from", b"to", b"subject"]) + raw
    result = await smtp_send(gw.inbound_port, "ana@example.com", [PORTAL], signed)
    assert result[:2] == ("DATA", 250)
    staff = read((await wait_for_mail(gw.s.cfg.maildir_root,
                                      "frontdesk@practice.example.org"))[0])
    assert staff["X-Portal-Sender-Auth"] == "pass"
    unsigned = await smtp_send(gw.inbound_port, "ana@example.com", [PORTAL], raw)
    assert unsigned == ("DATA", 550, REFUSAL)
    tampered = signed.replace(b"next week", b"next year")
    assert (await smtp_send(gw.inbound_port, "ana@example.com", [PORTAL], tampered))[:2] \
        == ("DATA", 550)


FROM_TRICKS = [
    b"From: ana@example.com <mallory@evil.example>",
    b'From: "ana@example.com" <mallory@evil.example>',
    b"From: ana@example.com, mallory@evil.example",
    b"From: =?utf-8?q?ana=40example=2Ecom?= <mallory@evil.example>",
    b"From: mallory@evil.example (ana@example.com)",
    b"From: ana@example.com@evil.example",
    b"From: <ana@example.com>@evil.example",
    b'From: "ana@example.com\\" <mallory@evil.example>',
    b"From:",
]


@pytest.mark.parametrize("header", FROM_TRICKS)
async def test_from_header_tricks_are_refused(start, header):
    gw = await start()
    raw = patient_mail().as_bytes().replace(b"From: ana@example.com", header, 1)
    assert header in raw
    result = await smtp_send(gw.inbound_port, "ana@example.com", [PORTAL], raw)
    assert result == ("DATA", 550, REFUSAL)
    assert stored(gw) == 0
