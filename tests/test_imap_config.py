"""IMAP settings and envelope rebuilding: no server needed."""
from __future__ import annotations

import tomllib

import pytest

from gateway.addresses import Addresses
from gateway.config import ConfigError, build_config
from gateway.imap import envelope
from gateway.imap.pull import backoff_delay
from tests.conftest import ROOT

ACCOUNT = '[[imap.accounts]]\nname = "practice"\nhost = "imap.example.org"\nusername = "u"\n'


def build(extra: str):
    text = (ROOT / "config.example.toml").read_text() + "\n" + extra
    return build_config(tomllib.loads(text), ROOT / "config.toml")


def test_example_config_has_imap_off():
    assert build("").imap.accounts == []


def test_account_defaults():
    acct = build(ACCOUNT).imap.accounts[0]
    assert (acct.port, acct.tls, acct.mailbox, acct.done_folder, acct.refused_folder) == \
        (993, "implicit", "INBOX", "Portal/Done", "Portal/Refused")
    assert acct.rcpt == "portal@portal.example.org" and acct.use_idle
    assert build(ACCOUNT + 'tls = "starttls"\n').imap.accounts[0].port == 143


@pytest.mark.parametrize("extra,field", [
    ('tls = "none"\n', "tls"),
    ('tls = "ssl"\n', "tls"),
    ('port = "x"\n', "port"),
    ('poll_seconds = 0\n', "poll_seconds"),
    ('rcpt = "someone@elsewhere.org"\n', "rcpt"),
    ('ca_file = "missing.pem"\n', "ca_file"),
    ('colour = "blue"\n', "colour"),
])
def test_account_errors_name_file_and_field(extra, field):
    with pytest.raises(ConfigError, match=rf"config.toml: \[imap.accounts 'practice'\] {field}"):
        build(ACCOUNT + extra)


def test_plaintext_only_on_loopback_and_when_allowed():
    plain = ACCOUNT.replace("imap.example.org", "127.0.0.1") + 'tls = "none"\n'
    with pytest.raises(ConfigError, match="allow_plaintext_loopback"):
        build(plain)
    assert build(plain + "allow_plaintext_loopback = true\n").imap.accounts[0].port == 143
    with pytest.raises(ConfigError, match="tls"):
        build(ACCOUNT + 'tls = "none"\nallow_plaintext_loopback = true\n')


def test_duplicate_accounts_and_folder_targets():
    with pytest.raises(ConfigError, match="duplicate account name"):
        build(ACCOUNT + ACCOUNT)
    with pytest.raises(ConfigError, match=r"\[imap.folders.billing\] account"):
        build(ACCOUNT + '[imap.folders]\nbilling = { account = "nope", folder = "F" }\n')
    cfg = build(ACCOUNT + '[imap.folders]\nbilling = { account = "practice", folder = "F" }\n')
    assert cfg.imap.folders["billing"].folder == "F"


def test_routing_may_name_configured_imap_folders_only():
    folders = '[imap.folders]\nbilling = { account = "practice", folder = "Portal/Billing" }\n'
    text = (ROOT / "config.example.toml").read_text().replace(
        'billing = ["billing@practice.example.org"]', 'billing = ["imap:billing"]')
    cfg = build_config(tomllib.loads(text + "\n" + ACCOUNT + folders), ROOT / "config.toml")
    assert cfg.team_for("billing") == ["imap:billing"]
    with pytest.raises(ConfigError, match=r"\[routing.categories\] billing"):
        build_config(tomllib.loads(text), ROOT / "config.toml")


ADDR = Addresses("portal.example.org")


def derive(headers: str):
    raw = (headers.strip() + "\n\nbody\n").replace("\n", "\r\n").encode()
    return envelope.derive(ADDR, raw, "portal@portal.example.org")


def test_recipients_from_delivery_headers_then_to_cc_then_account():
    env = derive("Return-Path: <ana@example.com>\nDelivered-To: reply+abc@portal.example.org\n"
                 "To: portal@portal.example.org\nFrom: ana@example.com")
    assert env.rcpt_tos == ["reply+abc@portal.example.org"] and env.mail_from == "ana@example.com"
    env = derive("Delivered-To: mailbox@hosted.example\nX-Original-To: Portal@Portal.Example.Org\n"
                 "To: x@y.org")
    assert env.rcpt_tos == ["portal@portal.example.org"]
    env = derive("To: Someone <x@y.org>, reply+t1@portal.example.org\n"
                 "Cc: reply+t2@portal.example.org")
    assert env.rcpt_tos == ["reply+t1@portal.example.org", "reply+t2@portal.example.org"]
    assert derive("To: x@y.org").rcpt_tos == ["portal@portal.example.org"]


def test_sender_from_return_path():
    assert derive("Return-Path: <>\nFrom: ana@example.com").mail_from == ""
    assert derive("From: Ana <ana@example.com>").mail_from == "ana@example.com"
    env = derive("Return-Path: <SRS0=ab=cd=example.com=ana@fwd.example>\nMessage-ID: <m1@x>")
    assert env.rewritten and env.message_id == "<m1@x>"


def test_backoff_is_capped_with_jitter():
    delays = [backoff_delay(n, base=1, cap=30) for n in range(1, 12)]
    assert all(d <= 30 for d in delays) and delays[-1] >= 15
    assert 0.5 <= backoff_delay(1) <= 1.0
    # jitter: many pollers failing together must not retry in lock step
    samples = [backoff_delay(5, base=1, cap=30) for _ in range(200)]
    assert all(8 <= d <= 16 for d in samples)
    assert len(set(samples)) > 150 and min(samples) < 9 and max(samples) > 15
