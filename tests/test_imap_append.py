"""Team delivery by IMAP APPEND into a real Dovecot folder."""
from __future__ import annotations

from email.message import EmailMessage

import pytest

from gateway.delivery.errors import PermanentFailure, TemporaryFailure
from gateway.delivery.imap_append import ImapAppendDelivery, WithImapFolders
from gateway.delivery.maildir import MaildirDelivery
from tests.dovecot import account_toml
from tests.test_imap import dovecot, dovecot_cert, mailbox, make_services  # noqa: F401

FOLDERS = '\n[imap.folders]\nbilling = { account = "practice", folder = "Portal/Billing" }\n'


def staff_copy(outbox_id: int) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Ana Lopez <portal@portal.example.org>"
    msg["To"] = "billing@practice.example.org"
    msg["Subject"] = "[Portal: billing] Statement"
    msg["X-Portal-Outbox"] = str(outbox_id)
    msg.set_content("Why was I charged twice?")
    return msg.as_bytes()


async def test_append_is_visible_in_the_folder_and_idempotent(make_services, dovecot,
                                                              mailbox, monkeypatch):
    monkeypatch.setenv("PORTAL_TEST_IMAP_PASSWORD", "s3cret-imap-pass")
    services = make_services(account_toml(dovecot, port=dovecot.port, tls="starttls",
                                          password="env:PORTAL_TEST_IMAP_PASSWORD") + FOLDERS)
    backend = WithImapFolders(MaildirDelivery(services.cfg.maildir_root), services.cfg)
    frm = "bounces+x@portal.example.org"
    try:
        assert await backend.deliver(7, 0, frm, "imap:billing", staff_copy(7)) \
            == "Portal/Billing"
        await backend.deliver(7, 0, frm, "imap:billing", staff_copy(7))  # after a crash
        await backend.deliver(77, 0, frm, "imap:Billing", staff_copy(77))  # "7" in "77"
        await backend.deliver(7, 0, frm, "imap:billing", staff_copy(7))
        await backend.deliver(8, 0, frm, "billing@practice.example.org", staff_copy(8))
    finally:
        await backend.close()
    assert len(list((services.cfg.maildir_root / "billing@practice.example.org" / "new")
                    .iterdir())) == 1
    stored = mailbox.messages("Portal/Billing")
    assert len(stored) == 2
    assert sorted(m.split(b"X-Portal-Outbox: ")[1].split(b"\r\n")[0] for m in stored) \
        == [b"7", b"77"]
    assert b"Why was I charged twice?" in stored[0] and b"\r\n" in stored[0]


async def test_unknown_target_is_permanent_and_a_dead_server_temporary(make_services,
                                                                       dovecot):
    services = make_services(account_toml(dovecot) + FOLDERS)
    backend = ImapAppendDelivery(services.cfg)
    with pytest.raises(PermanentFailure):
        await backend.deliver(1, 0, "", "imap:nursing", staff_copy(1))
    dovecot.stop()
    with pytest.raises(TemporaryFailure):  # the worker retries with backoff
        await backend.deliver(2, 0, "", "imap:billing", staff_copy(2))
    await backend.close()



async def test_category_routed_to_an_imap_folder_end_to_end(tmp_path, db_url, dovecot,
                                                            mailbox, make_services):
    import asyncio
    from gateway.app import Gateway
    from tests.helpers import add_patient, patient_mail, smtp_send
    services = make_services(account_toml(dovecot) + FOLDERS)  # migrates; config path
    path = services.cfg.path
    path.write_text(path.read_text().replace('billing = ["billing@practice.example.org"]',
                                             'billing = ["imap:billing"]'))
    from gateway.config import load_config
    from gateway.services import Services
    routed = Services.create(load_config(path))
    assert routed.cfg.team_for("billing") == ["imap:billing"]
    add_patient(routed)
    gw = Gateway(routed, inbound_port=0, submission_port=0, http_port=0)
    await gw.start()
    try:
        msg = patient_mail(subject="My bill", body="I was charged twice on my last statement, "
                           "can billing check the invoice?")
        result = await smtp_send(gw.inbound_port, "ana@example.com",
                                 ["portal@portal.example.org"], msg.as_bytes())
        assert result[:2] == ("DATA", 250)
        for _ in range(200):
            stored = mailbox.messages("Portal/Billing")
            if stored:
                break
            await asyncio.sleep(0.05)
        assert len(stored) == 1
        assert b"X-Portal-Category: billing" in stored[0] and b"charged twice" in stored[0]
    finally:
        await gw.stop(deadline=5)
        routed.close()
