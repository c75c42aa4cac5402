"""Sender authentication: verify mode against a real DNS stub with real keys and signatures,
upstream A-R placement, and From-header tricks."""
from __future__ import annotations

import email
import email.policy

import dkim
import pytest
from sqlalchemy import func, select

from gateway.app import Gateway
from gateway.config import load_config
from gateway.models import Audit, Message, Outbox
from gateway.services import Services
from tests.dnsstub import DNSStub
from tests.conftest import maildir_files, wait_for_mail, write_config
from tests.helpers import add_patient, dkim_keypair, patient_mail, raw_smtp, smtp_send

PORTAL = "portal@portal.example.org"
REFUSAL = ("5.7.1 This address accepts mail only from enrolled portal patients; "
           "please call the office")


@pytest.fixture
async def start(tmp_path, db_url, config):  # `config` migrates the database
    gateways = []

    async def make(dns=None, smtp=None, **policy):
        if dns is not None:
            policy.update(dns_servers=[dns.address], dns_timeout_seconds=2)
        cfg = load_config(write_config(tmp_path, db_url),
                          overrides={"policy": policy, "smtp": smtp or {}})
        services = Services.create(cfg)
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


@pytest.fixture
def dns():
    stub = DNSStub()
    yield stub
    stub.stop()


@pytest.fixture
def keys(tmp_path):
    """Two real RSA keys: the patient's domain's and an attacker's."""
    (tmp_path / "ok").mkdir()
    (tmp_path / "evil").mkdir()
    good, good_txt = dkim_keypair(tmp_path / "ok")
    evil, evil_txt = dkim_keypair(tmp_path / "evil")
    return {"good": (good.read_bytes(), good_txt), "evil": (evil.read_bytes(), evil_txt)}


def publish(dns, keys, dmarc="v=DMARC1; p=reject", spf=None):
    dns.resolver.txt("s1._domainkey.example.com", keys["good"][1])
    dns.resolver.txt("s1._domainkey.evil.test", keys["evil"][1])
    dns.resolver.txt("_dmarc.example.com", dmarc)
    if spf:
        dns.resolver.txt("example.com", spf)


def crlf(msg) -> bytes:
    return msg.as_bytes().replace(b"\n", b"\r\n")


def sign(raw: bytes, key: bytes, domain: bytes, length=False) -> bytes:
    return dkim.sign(raw, b"s1", domain, key, include_headers=[b"from", b"to", b"subject"],
                     length=length) + raw


class TagTrickDKIM(dkim.DKIM):
    """Signs with the attacker's own key but puts ``xx=d=example.com`` first in the tags."""

    def gen_header(self, fields, *args):
        return super().gen_header([(b"xx", b"d=example.com")] + list(fields), *args)


VERIFY = {"auth_mode": "verify", "require_aligned_auth": True}


async def test_verify_aligned_dkim_passes_and_is_acknowledged(start, dns, keys):
    publish(dns, keys)
    gw = await start(dns=dns, **VERIFY)
    signed = sign(crlf(patient_mail()), keys["good"][0], b"example.com")
    assert (await smtp_send(gw.inbound_port, "ana@example.com", [PORTAL], signed))[:2] \
        == ("DATA", 250)
    root = gw.s.cfg.maildir_root
    staff = read((await wait_for_mail(root, "frontdesk@practice.example.org"))[0])
    assert staff["X-Portal-Sender-Auth"] == "pass"
    assert str(staff["Authentication-Results"]).startswith("portal.example.org; dkim=pass "
                                                           "header.d=example.com;")
    assert "dmarc=pass header.from=example.com" in str(staff["Authentication-Results"])
    await wait_for_mail(root, "ana@example.com")  # acknowledged


async def test_verify_refuses_unsigned_tampered_and_tag_tricks(start, dns, keys):
    publish(dns, keys)
    gw = await start(dns=dns, **VERIFY)
    raw = crlf(patient_mail())
    good = sign(raw, keys["good"][0], b"example.com")
    trick = TagTrickDKIM(raw).sign(b"s1", b"evil.test", keys["evil"][0],
                                   include_headers=[b"from", b"to", b"subject"]) + raw
    assert b"xx=d=example.com" in trick
    limited = sign(raw, keys["good"][0], b"example.com", length=True)
    appended = limited.replace(b"next week?\r\n", b"next week?\r\nAlso send my records "
                               b"to mallory@evil.test\r\n")
    cases = {"unsigned": raw, "tampered": good.replace(b"next week", b"next year"),
             "own-key": sign(raw, keys["evil"][0], b"evil.test"), "tag-trick": trick,
             "l=-appended": appended, "l=-as-signed": limited}
    results = {name: await smtp_send(gw.inbound_port, "ana@example.com", [PORTAL], data)
               for name, data in cases.items()}
    assert all(r == ("DATA", 550, REFUSAL) for r in results.values()), results
    assert stored(gw) == 0
    alerts = await wait_for_mail(gw.s.cfg.maildir_root, "security@practice.example.org")
    assert len(alerts) == 1  # one alert an hour per patient; every attempt audited
    with gw.s.factory() as session:
        attempts = session.scalar(select(func.count()).select_from(Audit).where(
            Audit.action == "message.spoofing"))
        queued = session.scalar(select(func.count()).select_from(Outbox).where(
            Outbox.kind == "security_alert"))
    assert attempts == len(cases) and queued == 1
    assert maildir_files(gw.s.cfg.maildir_root, "ana@example.com") == []  # patient: nothing


async def test_verify_spf_aligned_pass_and_unaligned_spf(start, dns, keys):
    publish(dns, keys, spf="v=spf1 ip4:127.0.0.1 -all")
    dns.resolver.txt("evil.test", "v=spf1 ip4:127.0.0.1 -all")
    gw = await start(dns=dns, **VERIFY)
    assert (await smtp_send(gw.inbound_port, "ana@example.com", [PORTAL],
                            crlf(patient_mail())))[:2] == ("DATA", 250)
    # SPF passes for the attacker's own envelope domain, which is not the From domain
    forged = await smtp_send(gw.inbound_port, "bounce@evil.test", [PORTAL],
                             crlf(patient_mail()))
    assert forged == ("DATA", 550, REFUSAL)


async def test_dns_failure_is_451_never_a_pass(start, dns, keys):
    publish(dns, keys)
    dns.resolver.servfail.add("_dmarc.example.com")
    gw = await start(dns=dns, **VERIFY)
    signed = sign(crlf(patient_mail()), keys["good"][0], b"example.com")
    result = await smtp_send(gw.inbound_port, "ana@example.com", [PORTAL], signed)
    assert result[:2] == ("DATA", 451) and result[2].startswith("4.3.0")
    assert stored(gw) == 0


async def test_reason_mailed_only_to_authenticated_sender_once_a_day(start, dns, keys):
    publish(dns, keys)
    gw = await start(dns=dns, **VERIFY)
    add_patient(gw.s, account="1002", email="sus@example.com", status="suspended")
    mail = patient_mail("sus@example.com")
    signed = sign(crlf(mail), keys["good"][0], b"example.com")
    for _ in range(2):
        assert await smtp_send(gw.inbound_port, "sus@example.com", [PORTAL], signed) \
            == ("DATA", 550, REFUSAL)
    unsigned = await smtp_send(gw.inbound_port, "sus@example.com", [PORTAL], crlf(mail))
    assert unsigned == ("DATA", 550, REFUSAL)
    notices = await wait_for_mail(gw.s.cfg.maildir_root, "sus@example.com")
    assert len(notices) == 1 and "suspended" in read(notices[0])["Subject"]


async def test_enumeration_probe_gets_identical_replies(start, dns, keys):
    publish(dns, keys)
    gw = await start(dns=dns, **VERIFY)
    add_patient(gw.s, account="1002", email="inv@example.com", status="invited")

    async def probe(sender: str) -> list[bytes]:
        data = crlf(patient_mail(sender)).replace(b"\r\n.", b"\r\n..")
        replies = await raw_smtp(gw.inbound_port, [
            b"EHLO probe.example\r\n", f"MAIL FROM:<{sender}>\r\n".encode(),
            f"RCPT TO:<{PORTAL}>\r\n".encode(), b"DATA\r\n", data + b"\r\n.\r\n"])
        return replies[2:]  # MAIL, RCPT, DATA, end of data
    answers = {s: await probe(s) for s in ("ana@example.com", "inv@example.com",
                                          "stranger@example.com")}
    assert len(set(map(tuple, answers.values()))) == 1, answers
    assert answers["ana@example.com"][1].startswith(b"250")  # RCPT: nothing decided yet
    assert answers["ana@example.com"][3].startswith(b"550 5.7.1")


async def test_upstream_trusts_only_results_above_foreign_received(start):
    gw = await start(require_aligned_auth=True, **UPSTREAM)
    good = "mx.practice.example.org; dmarc=pass header.from=example.com"
    received = "from client.example.net by mx.practice.example.org; Tue, 1 Dec 2026 00:00 +0000"
    foreign = "from attacker.example by relay.attack.example; Tue, 1 Dec 2026 00:00 +0000"

    def message(*headers) -> bytes:
        block = "".join(f"{name}: {value}\r\n" for name, value in headers).encode()
        return block + crlf(patient_mail())
    cases = {
        "above": (message(("Authentication-Results", good), ("Received", received)), 250),
        "below-foreign": (message(("Received", received), ("Received", foreign),
                                  ("Authentication-Results", good)), 550),
        "other-domain": (message(("Authentication-Results", good.replace(
            "header.from=example.com", "header.from=attack.example"))), 550),
        "untrusted-id": (message(("Authentication-Results", good.replace(
            "mx.practice.example.org", "mx.attack.example"))), 550),
        "fail-wins": (message(("Authentication-Results", good), ("Authentication-Results",
                      good.replace("dmarc=pass", "dmarc=fail"))), 550),
    }
    for name, (data, code) in cases.items():
        result = await smtp_send(gw.inbound_port, "ana@example.com", [PORTAL], data)
        assert result[:2] == ("DATA", code), (name, result)


ENVELOPE_TRICKS = ["<ana@example.com(a.attack.example>", "<ana@example.com(x)>",
                   "<@relay.attack.example:ana@example.com>", '<"ana@example.com"@attack.example>',
                   "<ana@\uff45xample.com>", "<ana\uff20example.com>", "<ana@[127.0.0.1]>",
                   "ana@example.com", "<ana@example.com.>", "<ana..x@example.com>"]


@pytest.mark.parametrize("address", ENVELOPE_TRICKS)
async def test_envelope_tricks_get_553_at_mail(start, address):
    gw = await start()
    replies = await raw_smtp(gw.inbound_port, [b"EHLO x\r\n",
                                               f"MAIL FROM:{address}\r\n".encode()])
    assert replies[2].startswith(b"553 5.1.7"), replies


HEADER_TRICKS = [b"From : mallory@evil.example\r\nFrom: ana@example.com",
                 b"From\t: mallory@evil.example\r\nFrom: ana@example.com",
                 b"From: ana@example.com\r\nfrom: mallory@evil.example",
                 b"From: ana@example.com (mallory@evil.example)",
                 b"From: ana@\xef\xbd\x85xample.com",
                 b"From: ana@ex\xd0\xb0mple.com"]


@pytest.mark.parametrize("header", HEADER_TRICKS)
async def test_from_lines_a_parser_could_misread_are_refused(start, header):
    gw = await start()
    raw = crlf(patient_mail()).replace(b"From: ana@example.com", header, 1)
    result = await smtp_send(gw.inbound_port, "ana@example.com", [PORTAL], raw)
    assert result == ("DATA", 550, REFUSAL)
    leading = b" X-Folded: x\r\n" + crlf(patient_mail())
    assert await smtp_send(gw.inbound_port, "ana@example.com", [PORTAL], leading) \
        == ("DATA", 550, REFUSAL)
    assert stored(gw) == 0


def test_auth_off_is_refused_beyond_loopback(tmp_path, db_url):
    from gateway.config import ConfigError
    path = write_config(tmp_path, db_url)
    with pytest.raises(ConfigError, match="auth_mode"):
        load_config(path, overrides={"smtp": {"inbound_host": "0.0.0.0"}})
    cfg = load_config(path, overrides={"smtp": {"inbound_host": "0.0.0.0"},
                                       "policy": {"auth_mode": "verify"}})
    assert cfg.policy.auth_mode == "verify"
    with pytest.raises(ConfigError, match="dns_servers"):
        load_config(path, overrides={"policy": {"dns_servers": ["resolver.example:53"]}})


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


async def test_reply_token_needs_dmarc_not_to_fail(start, dns, keys):
    publish(dns, keys, dmarc="v=DMARC1; p=none")
    gw = await start(dns=dns, **VERIFY)
    signed = sign(crlf(patient_mail()), keys["good"][0], b"example.com")
    assert (await smtp_send(gw.inbound_port, "ana@example.com", [PORTAL], signed))[:2] \
        == ("DATA", 250)
    ack = read((await wait_for_mail(gw.s.cfg.maildir_root, "ana@example.com"))[0])
    reply_to = ack["Reply-To"].addresses[0].addr_spec
    unsigned = crlf(patient_mail(to=reply_to, body="Thanks, Tuesday is fine."))
    # p=none and no signature: DMARC does not fail, the token is the second factor
    assert (await smtp_send(gw.inbound_port, "ana@example.com", [reply_to], unsigned))[:2] \
        == ("DATA", 250)
    new = crlf(patient_mail(body="A new question."))
    assert (await smtp_send(gw.inbound_port, "ana@example.com", [PORTAL], new)) \
        == ("DATA", 550, REFUSAL)  # portal@ without a token needs an aligned pass
    dns.resolver.txt("_dmarc.example.com", "v=DMARC1; p=reject")
    other = crlf(patient_mail(to=reply_to, body="Another one."))
    assert (await smtp_send(gw.inbound_port, "ana@example.com", [reply_to], other)) \
        == ("DATA", 550, REFUSAL)


async def test_staff_token_needs_an_authenticated_practice_sender(start, dns, keys):
    from gateway.models import Thread
    from tests.test_staff_reply import staff_reply
    publish(dns, keys, spf="v=spf1 ip4:127.0.0.1 -all")
    gw = await start(dns=dns, **VERIFY)
    assert (await smtp_send(gw.inbound_port, "ana@example.com", [PORTAL],
                            crlf(patient_mail())))[:2] == ("DATA", 250)
    root = gw.s.cfg.maildir_root
    staff_copy = read((await wait_for_mail(root, "frontdesk@practice.example.org"))[0])
    staff_addr = staff_copy["Reply-To"].addresses[0].addr_spec
    answer = crlf(staff_reply(staff_copy))
    forged = await smtp_send(gw.inbound_port, "nurse@practice.example.org", [staff_addr],
                             answer)
    assert forged[:2] == ("DATA", 550) and forged[2].startswith("5.7.1")
    with gw.s.factory() as session:
        assert session.scalars(select(Thread)).one().state == "open"  # clock still runs
    dns.resolver.txt("practice.example.org", "v=spf1 ip4:127.0.0.1 -all")
    assert (await smtp_send(gw.inbound_port, "nurse@practice.example.org", [staff_addr],
                            answer))[:2] == ("DATA", 250)
    with gw.s.transaction() as session:
        thread = session.scalars(select(Thread)).one()
        assert thread.state == "answered"
        thread.state = "closed"
    dead = await smtp_send(gw.inbound_port, "nurse@practice.example.org", [staff_addr], answer)
    assert dead[:2] == ("RCPT", 550) and dead[2].startswith("5.1.1")


async def test_auth_off_warns_at_start(start, caplog):
    import logging
    caplog.set_level(logging.WARNING, logger="gateway.app")
    await start()
    assert any("auth_mode" in r.getMessage() for r in caplog.records)


async def test_unverified_mail_is_never_acknowledged_nor_counted_against_the_rate(start, dns,
                                                                                  keys):
    publish(dns, keys, dmarc="v=DMARC1; p=none")
    gw = await start(dns=dns, smtp={"max_messages_per_patient_per_hour": 1},
                     auth_mode="verify", require_aligned_auth=False)
    root = gw.s.cfg.maildir_root
    for i in range(2):  # not authenticated, DMARC not failing: staff see it, marked
        unsigned = crlf(patient_mail(body=f"Can I move my appointment to next week? ({i})"))
        assert (await smtp_send(gw.inbound_port, "ana@example.com", [PORTAL], unsigned))[:2] \
            == ("DATA", 250)
    staff = await wait_for_mail(root, "frontdesk@practice.example.org", 2)
    assert {read(p)["X-Portal-Sender-Auth"] for p in staff} == {"none"}
    signed = sign(crlf(patient_mail(body="Can I move my appointment to Friday?")), keys["good"][0], b"example.com")
    assert (await smtp_send(gw.inbound_port, "ana@example.com", [PORTAL], signed))[:2] \
        == ("DATA", 250)  # the two unverified ones did not use up the hourly limit
    acks = await wait_for_mail(root, "ana@example.com")
    assert len(acks) == 1  # only the authenticated message was acknowledged
    again = sign(crlf(patient_mail(body="Can I move my appointment to Monday?")), keys["good"][0], b"example.com")
    assert (await smtp_send(gw.inbound_port, "ana@example.com", [PORTAL], again))[:2] \
        == ("DATA", 451)


async def test_reason_notice_speaks_the_roster_language(start, dns, keys):
    """An invited patient whose roster language is Spanish learns in Spanish why her mail
    was not received (and only because her mail passed authentication)."""
    publish(dns, keys)
    gw = await start(dns=dns, **VERIFY)
    add_patient(gw.s, account="1003", email="lu@example.com", status="invited", language="es")
    signed = sign(crlf(patient_mail("lu@example.com")), keys["good"][0], b"example.com")
    assert await smtp_send(gw.inbound_port, "lu@example.com", [PORTAL], signed) \
        == ("DATA", 550, REFUSAL)
    [notice] = await wait_for_mail(gw.s.cfg.maildir_root, "lu@example.com")
    mail = read(notice)
    assert "inscripción" in mail["Subject"]
    assert "911" in mail.get_body(("plain",)).get_content()
