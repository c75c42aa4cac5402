"""IMAP pull against a real Dovecot (its own throwaway instance on loopback ports)."""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from gateway.config import load_config
from gateway.delivery.worker import OutboxWorker
from gateway.imap import ImapPoller
from gateway.models import ImapSeen, Message, Outbox
from gateway.services import Services
from tests.conftest import ROOT, maildir_files, migrate, write_config
from tests.dovecot import Mailbox, account_toml, make_cert, make_server
from tests.helpers import add_patient, patient_mail

PORTAL = "portal@portal.example.org"
FRONTDESK = "frontdesk@practice.example.org"
DONE, REFUSED = "Portal/Done", "Portal/Refused"


@pytest.fixture(scope="session")
def dovecot_cert():
    path = Path(tempfile.mkdtemp(prefix="portal-dovecot-cert-"))
    make_cert(path)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def dovecot(dovecot_cert):
    server = make_server(dovecot_cert)
    yield server
    server.cleanup()


@pytest.fixture
def mailbox(dovecot):
    box = Mailbox(dovecot)
    yield box
    box.close()


@pytest.fixture
def make_services(tmp_path, db_url):
    made = []

    def make(*tables: str) -> Services:
        if not made:
            migrate(db_url)
        path = write_config(tmp_path, db_url)
        path.write_text(path.read_text() + "".join(tables))
        made.append(Services.create(load_config(path)))
        return made[-1]
    yield make
    for s in made:
        s.close()


@pytest.fixture
def services(make_services, dovecot):
    s = make_services(account_toml(dovecot))
    add_patient(s)
    return s


def mail(i: int, sender: str = "ana@example.com", return_path: str | None = None,
         to: str = PORTAL) -> bytes:
    """A patient message as the hosted mailbox holds it (Return-Path, Delivered-To)."""
    msg = patient_mail(sender=sender, to=to, subject=f"Appointment {i}")
    msg["Return-Path"] = f"<{sender if return_path is None else return_path}>"
    msg["Delivered-To"] = to
    return msg.as_bytes()


async def until(check, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@contextlib.asynccontextmanager
async def running(services, n: int = 1, cls=ImapPoller, acct=None):
    pollers = [cls(services, acct or services.cfg.imap.accounts[0],
                   name=f"poller-{i}" if n > 1 else None) for i in range(n)]
    for poller in pollers:
        poller.backoff_base, poller.backoff_cap = 0.1, 1.0
    tasks = [asyncio.create_task(p.run()) for p in pollers]
    try:
        yield pollers
    finally:
        for poller in pollers:
            poller.stop()
        await asyncio.wait_for(asyncio.gather(*tasks), 20)


def count(services, model, *where) -> int:
    with services.factory() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where))


async def deliver_all(services) -> None:
    worker = OutboxWorker(services)
    while await worker.deliver_batch():
        pass


def drained(box: Mailbox, n: int, folder: str = DONE, source: str = "INBOX"):
    return lambda: box.count(source) == 0 and box.count(folder) == n


async def test_200_messages_ingested_once_and_moved_with_two_pollers(services, mailbox):
    for i in range(200):
        mailbox.append("INBOX", mail(i))
    async with running(services, n=2) as pollers:
        await until(drained(mailbox, 200), "200 messages in the done folder", timeout=120)
    assert sum(p.counts["accepted"] for p in pollers) == 200
    assert len(set(m.split(b"Message-ID:")[1][:60] for m in mailbox.messages(DONE))) == 200
    assert count(services, ImapSeen, ImapSeen.outcome == "accepted") == 200
    assert count(services, Message, Message.source == "imap") == 200
    await deliver_all(services)
    root = services.cfg.maildir_root
    staff = maildir_files(root, FRONTDESK)
    assert len(staff) == 200
    subjects = sorted(f.read_bytes().split(b"Appointment ")[1].split(b"\n")[0] for f in staff)
    assert subjects == sorted(str(i).encode() for i in range(200))  # one copy each
    assert len(maildir_files(root, "ana@example.com")) == 200  # one acknowledgement each


KILL_BEFORE_MOVE = """
import asyncio, os, signal, sys
from gateway.imap.client import ImapClient

async def killed(self, uids, folder):  # the outcome is committed; the move never happens
    os.kill(os.getpid(), signal.SIGKILL)

ImapClient.move = killed
from gateway.config import load_config
from gateway.imap import ImapPoller
from gateway.services import Services
services = Services.create(load_config(sys.argv[1]))
asyncio.run(ImapPoller(services, services.cfg.imap.accounts[0]).run())
"""


async def test_sigkill_after_commit_before_move_no_duplicate(services, mailbox):
    for i in range(5):
        mailbox.append("INBOX", mail(i))
    proc = await asyncio.to_thread(subprocess.run,
                                   [sys.executable, "-c", KILL_BEFORE_MOVE,
                                    str(services.cfg.path)],
                                   cwd=ROOT, capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    assert count(services, ImapSeen) == 5 and mailbox.count("INBOX") == 5
    async with running(services) as (poller,):
        await until(drained(mailbox, 5), "the restarted poller to move the five")
    assert poller.counts["again"] == 5 and poller.counts["accepted"] == 0
    await deliver_all(services)
    assert len(maildir_files(services.cfg.maildir_root, FRONTDESK)) == 5


async def test_dovecot_restart_mid_idle_reconnects_and_picks_up_mail(services, dovecot,
                                                                     mailbox):
    async with running(services) as (poller,):
        await until(lambda: poller.state == "idle", "the poller to IDLE")
        mailbox.close()
        dovecot.stop()
        await until(lambda: poller.state != "idle", "the poller to notice", timeout=10)
        # delivered by the MTA while the IMAP server was down
        new = dovecot.maildir / "new"
        new.mkdir(parents=True, exist_ok=True)
        (new / "1.outage.test").write_bytes(mail(1))
        dovecot.start()
        box = Mailbox(dovecot)
        box.append("INBOX", mail(2))
        await until(drained(box, 2), "both messages after the restart", timeout=30)
        await until(lambda: poller.state == "idle", "IDLE again")
        box.append("INBOX", mail(3))
        await until(drained(box, 3), "a message appended during the new IDLE", timeout=15)
        box.close()
    assert poller.counts["accepted"] == 3


class NoMovePoller(ImapPoller):
    async def _move(self, client, moves):
        for uids in moves.values():
            uids.clear()


async def test_uidvalidity_change_does_not_duplicate(make_services, dovecot, mailbox):
    services = make_services(account_toml(dovecot, mailbox="Portal/In"))
    add_patient(services)
    mailbox.create("Portal/In")
    raws = [mail(i) for i in range(3)]
    for raw in raws:
        mailbox.append("Portal/In", raw)
    before = mailbox.uidvalidity("Portal/In")
    async with running(services, cls=NoMovePoller):
        await until(lambda: count(services, ImapSeen) == 3, "three committed, none moved")
    mailbox.delete("Portal/In")
    mailbox.create("Portal/In")
    assert mailbox.uidvalidity("Portal/In") != before
    for raw in raws:
        mailbox.append("Portal/In", raw)
    resent = b"Received: from relay.example.net; Mon, 1 Jan 2024 00:00:00 +0000\r\n" + raws[0]
    mailbox.append("Portal/In", resent)  # other bytes, same Message-ID
    async with running(services) as (poller,):
        await until(drained(mailbox, 4, source="Portal/In"), "the re-read messages moved")
    assert poller.counts["duplicate"] == 4 and poller.counts["accepted"] == 0
    assert count(services, Message) == 3
    await deliver_all(services)
    assert len(maildir_files(services.cfg.maildir_root, FRONTDESK)) == 3


async def test_refused_mail_is_moved_kept_and_never_answered(services, mailbox, caplog):
    add_patient(services, account="1002", email="sus@example.com", status="suspended")
    mailbox.append("INBOX", mail(1, sender="stranger@example.net"))
    mailbox.append("INBOX", mail(2, sender="sus@example.com"))
    mailbox.append("INBOX", mail(3, return_path=""))  # null sender to portal@
    mailbox.append("INBOX", mail(4, sender="stranger@example.net", return_path="ana@example.com"))
    mailbox.append("INBOX", mail(6, to="reply+nosuchtoken@portal.example.org"))
    mailbox.append("INBOX", mail(5))
    caplog.set_level(logging.INFO)
    async with running(services):
        await until(drained(mailbox, 5, folder=REFUSED), "five refused")
    assert mailbox.count(DONE) == 1
    with services.factory() as session:
        reasons = sorted(session.scalars(select(ImapSeen.reason)
                                         .where(ImapSeen.outcome == "refused")))
        assert len(reasons) == 5 and "null-sender" in reasons
        assert "unknown-recipient" in reasons and "not-admitted-unknown" in reasons
        recipients = set(session.scalars(select(Outbox.recipient)))
    assert recipients == {FRONTDESK, "ana@example.com"}  # only the accepted one's mail
    logged = " ".join(json.dumps(vars(r), default=str) for r in caplog.records)
    assert "example.net" not in logged and "Appointment" not in logged


async def test_polling_without_idle_or_move(make_services, dovecot_cert):
    server = make_server(dovecot_cert, capability="IMAP4rev1 LITERAL+ UIDPLUS")
    try:
        services = make_services(account_toml(server))
        add_patient(services)
        box = Mailbox(server)
        box.append("INBOX", mail(1))
        async with running(services) as (poller,):
            await until(drained(box, 1), "the polled message moved (COPY + EXPUNGE)")
            assert poller.state in ("polling", "draining")
            box.append("INBOX", mail(2))
            await until(drained(box, 2), "the next poll")
        box.close()
    finally:
        server.cleanup()


async def test_plaintext_server_refused_unless_allowed_on_loopback(make_services,
                                                                   dovecot_cert, caplog):
    server = make_server(dovecot_cert, ssl=False)
    try:
        box = Mailbox(server)
        box.append("INBOX", mail(1))
        logins = (server.root / "dovecot.log").read_text().count("Login:")
        services = make_services(account_toml(server, port=server.port, tls="starttls"))
        add_patient(services)
        caplog.set_level(logging.INFO)
        async with running(services) as (poller,):
            await until(lambda: any("no TLS" in r.getMessage() for r in caplog.records),
                        "the refusal", timeout=10)
            await asyncio.sleep(0.5)
        assert poller.counts == {} and box.count("INBOX") == 1
        assert (server.root / "dovecot.log").read_text().count("Login:") == logins
        allowed = make_services(account_toml(server, port=server.port, tls="starttls",
                                             allow_plaintext_loopback=True))
        async with running(allowed):
            await until(drained(box, 1), "the message, plaintext allowed on loopback")
        box.close()
    finally:
        server.cleanup()


async def test_silent_server_times_out_and_backs_off(make_services, dovecot, caplog):
    async def silent(reader, writer):
        await asyncio.sleep(30)
    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    services = make_services(account_toml(dovecot, port=port, timeout_seconds=0.3))
    caplog.set_level(logging.INFO)
    try:
        async with running(services) as (poller,):  # backoff base 0.1 s, cap 1 s
            delays, real_sleep = [], poller._sleep

            async def recorded(seconds):  # the delays the poller asks for, waited briefly
                delays.append(seconds)
                await real_sleep(min(seconds, 0.05))
            poller._sleep = recorded
            await until(lambda: any("imeout" in getattr(r, "error", "")
                                    for r in caplog.records), "a timeout", timeout=5)
            await until(lambda: len(delays) >= 6, "six retries", timeout=20)
            assert poller.state in ("waiting", "connecting")
    finally:
        server.close()
    for attempt, delay in enumerate(delays[:6], 1):  # doubling, capped, with jitter
        step = min(1.0, 0.1 * 2 ** (attempt - 1))
        assert step / 2 <= delay <= step, (attempt, delays)
    assert delays[5] > 2 * delays[0]


async def test_crashing_message_is_retried_then_held_and_set_aside(make_services, dovecot,
                                                                   mailbox, monkeypatch):
    from gateway import pipeline
    from gateway.models import Quarantine

    def crash_on_marker(ctx):
        if b"CRASH-ME" in ctx.inbound.raw:
            raise KeyError("a bug")
    trusted = pipeline.PATIENT_STEPS.index(pipeline.trust_sender) + 1  # quarantine: after auth
    monkeypatch.setitem(pipeline.CHAINS, "portal",
                        pipeline.PATIENT_STEPS[:trusted] + (crash_on_marker,)
                        + pipeline.PATIENT_STEPS[trusted:])
    services = make_services(account_toml(dovecot, use_idle=False))
    add_patient(services)
    mailbox.append("INBOX", mail(1).replace(b"Subject: Appointment 1", b"Subject: CRASH-ME"))
    mailbox.append("INBOX", mail(2))
    async with running(services) as (poller,):
        await until(lambda: mailbox.count("Portal/Error") == 1, "the crashing one set aside")
        await until(lambda: mailbox.count(DONE) == 1 and mailbox.count("INBOX") == 0,
                    "the good one done")
    assert poller.counts["deferred"] == 2 and poller.counts["held"] == 1
    with services.factory() as session:
        held = session.scalars(select(Quarantine)).one()
        assert (held.state, held.attempts, held.source) == ("held", 3, "imap")
        assert session.scalars(select(ImapSeen.outcome).where(ImapSeen.outcome == "held")).one()
