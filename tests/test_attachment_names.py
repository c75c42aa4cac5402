"""Attachment names a stranger chooses cannot write words of their own into the practice's
acknowledgement: names are cleaned, cut, capped, defanged, and listed only when the
sender passed authentication (over real SMTP)."""
from __future__ import annotations

import email
import email.policy

import pytest

from gateway.app import Gateway
from gateway.config import load_config
from gateway.content.filenames import shown_name
from gateway.services import Services
from tests.conftest import wait_for_mail, write_config
from tests.helpers import add_patient, patient_mail, smtp_send

ANA, PORTAL = "ana@example.com", "portal@portal.example.org"
UPSTREAM = {"auth_mode": "upstream", "trusted_authserv_ids": ["mx.practice.example.org"]}
PHISH = ("scan.pdf\u2028\u2028Your lab result is ABNORMAL. Log in at once at "
         "https://portal-login.example.net/reset to see it\u202e" + "x" * 200 + ".pdf")


@pytest.fixture
async def start(tmp_path, db_url, config):  # `config` migrates the database
    gateways = []

    async def make(**policy):
        cfg = load_config(write_config(tmp_path, db_url), overrides={"policy": policy})
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


def hostile_mail(authenticated: bool) -> bytes:
    msg = patient_mail(body="Please see the attached, I was charged twice for my visit.")
    if authenticated:
        msg["Authentication-Results"] = ("mx.practice.example.org; dmarc=pass "
                                         "header.from=example.com")
    names = [PHISH, "www.portal-login.example.net", "reset@example.net", "evil.zip",
             "bi\u202edi\u2066.pdf", "zero\u200bwidth.pdf"] + [f"page{i}.pdf" for i in range(8)]
    for name in names:
        msg.add_attachment(b"%PDF-1.4 x", maintype="application", subtype="pdf",
                           filename=name)
    return msg.as_bytes(policy=email.policy.SMTP)


async def ack_text(gw, raw: bytes) -> str:
    assert (await smtp_send(gw.inbound_port, ANA, [PORTAL], raw))[:2] == ("DATA", 250)
    path = (await wait_for_mail(gw.s.cfg.maildir_root, ANA))[0]
    return email.message_from_bytes(path.read_bytes(),
                                    policy=email.policy.default).get_body(("plain",)).get_content()


async def test_authenticated_sender_sees_cleaned_capped_defanged_names(start):
    gw = await start(**UPSTREAM)
    text = await ack_text(gw, hostile_mail(authenticated=True))
    listed = [line[3:-1] for line in text.splitlines() if line.startswith('- "')]
    assert len(listed) == 10 and "- and 4 more" in text
    assert "attachments (14)" in text
    for name in listed:
        assert len(name) <= 80 * 4  # defanging may lengthen; the cut is on the visible name
        assert not any(c in name for c in "\u2028\u2029\u202e\u2066\u200b\r\n")
    assert all("://" not in n and ".example.net" not in n and "@" not in n for n in listed)
    assert "www[.]portal-login[.]example[.]net" in listed and "evil[.]zip" in listed
    assert "bidi.pdf" in listed and "zerowidth.pdf" in listed
    assert "portal-login.example.net" not in text and "https://portal-login" not in text


async def test_unauthenticated_sender_gets_only_the_count(start):
    gw = await start()  # auth_mode off: nothing passed authentication
    text = await ack_text(gw, hostile_mail(authenticated=False))
    assert "attachments (14)" in text and "did not receive them." in text
    assert "ABNORMAL" not in text and "page1.pdf" not in text and "evil" not in text


def test_shown_name_rules():
    assert shown_name("lab results.pdf") == "lab results.pdf"
    assert shown_name("a\u2029b\tc.pdf") == "ab c.pdf"
    assert len(shown_name("n" * 300 + ".pdf")) == 80
    assert shown_name("http://evil.example/x") == "http[:][/][/]evil[.]example[/]x"
    assert shown_name("evil.example.pdf") == "evil[.]example[.]pdf"
    assert shown_name("\u202e\u200f") == "(unnamed file)"
