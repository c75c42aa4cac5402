"""Prompt redelivery: a claim names its owner and is renewed while the owner lives; a
gateway killed with mail in hand has that mail delivered at once by its successor, and a
dead peer's claims run out within ``lease_seconds``.  Maildir folders are fsynced once per
batch, before the batch is marked sent."""
from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiosmtpd.smtp import SMTP
from sqlalchemy import select

from gateway.config import load_config
from gateway.delivery import maildir as maildir_module
from gateway.delivery import owner
from gateway.delivery.worker import OutboxWorker
from gateway.models import Outbox, utcnow
from gateway.services import Services
from tests.conftest import migrate, write_config
from tests.helpers import add_patient, patient_mail

CLI = str(Path(sys.executable).parent / "portal-gateway")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StallingRelay:
    """A smarthost that takes DATA and never answers while `stall` is set."""

    def __init__(self):
        self.stall = True
        self.in_data = asyncio.Event()
        self.received: list[str] = []

    async def handle_DATA(self, server, session, envelope):
        if self.stall:
            self.in_data.set()
            await asyncio.sleep(3600)
        self.received.extend(envelope.rcpt_tos)
        return "250 OK"


def serve_config(tmp_path: Path, db_url: str, relay_port: int) -> Path:
    path = write_config(tmp_path, db_url)
    text = path.read_text().replace("inbound_port = 0", f"inbound_port = {free_port()}")
    text = text.replace("poll_seconds = 0.05", f"poll_seconds = 0.2\nmode = \"relay\"\n"
                        f"relay_port = {relay_port}\nrelay_tls = \"none\"\n"
                        "relay_timeout_seconds = 600\nretry_base_seconds = 0.1")
    path.write_text(text)
    return path


def start_serve(cfg: Path) -> subprocess.Popen:
    log = open(cfg.parent / "serve.log", "a")
    return subprocess.Popen([CLI, "--config", str(cfg), "serve"], stdout=log, stderr=log,
                            start_new_session=True)


async def wait_until(predicate, timeout: float) -> float:
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout} s")
        await asyncio.sleep(0.05)
    return time.monotonic() - start


async def send_when_up(port: int, raw: bytes) -> None:
    import aiosmtplib
    for _ in range(300):
        try:
            await aiosmtplib.send(raw, sender="ana@example.com",
                                  recipients=["portal@portal.example.org"],
                                  hostname="127.0.0.1", port=port, timeout=30)
            return
        except (OSError, aiosmtplib.SMTPConnectError):
            await asyncio.sleep(0.1)
    raise AssertionError("gateway did not start")


def claims(cfg_path: Path) -> list[tuple[str | None, str]]:
    services = Services.create(load_config(cfg_path), migrate=False)
    try:
        with services.factory() as session:
            return [(r.claimed_by, r.state) for r in session.scalars(select(Outbox))]
    finally:
        services.close()


async def test_mail_claimed_by_a_killed_gateway_goes_out_at_once_after_restart(
        tmp_path, db_url):
    relay = StallingRelay()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(relay), "127.0.0.1", 0)
    migrate(db_url)
    cfg = serve_config(tmp_path, db_url, server.sockets[0].getsockname()[1])
    services = Services.create(load_config(cfg))
    add_patient(services)
    services.close()
    port = int(cfg.read_text().split("inbound_port = ")[1].split()[0])
    first = start_serve(cfg)
    try:
        await send_when_up(port, patient_mail().as_bytes().replace(b"\n", b"\r\n"))
        await asyncio.wait_for(relay.in_data.wait(), 30)  # a mail is in the worker's hands
        held = [c for c in claims(cfg) if c[0]]
        assert held and all(c[0].split(" ")[1] == str(first.pid) for c in held)
        os.killpg(first.pid, signal.SIGKILL)
        await asyncio.to_thread(first.wait, 10)
        relay.stall = False
        restarted = time.monotonic()
        second = start_serve(cfg)
        try:
            await wait_until(lambda: {"frontdesk@practice.example.org",
                                      "ana@example.com"} <= set(relay.received), 30)
            took = time.monotonic() - restarted
        finally:
            second.terminate()
            await asyncio.to_thread(second.wait, 30)  # the relay answers QUIT meanwhile
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
        server.close()
    assert took < 15, took  # well within the 30 s lease: released at start, not waited out
    assert all(state == "sent" and who is None for who, state in claims(cfg))


class Recording:
    """A Maildir-like backend that remembers what was delivered and can be slow."""

    def __init__(self, delay: float = 0.0):
        self.delay, self.delivered = delay, []

    async def deliver(self, outbox_id, created_epoch, mail_from, recipient, raw):
        await asyncio.sleep(self.delay)
        self.delivered.append(outbox_id)

    async def close(self):
        pass


def queue_mail(services, count: int = 1) -> list[int]:
    from gateway import outbox
    from email.message import EmailMessage
    ids = []
    with services.transaction() as session:
        for _ in range(count):
            msg = EmailMessage()
            msg["Subject"] = "x"
            msg.set_content("x")
            ids.append(outbox.enqueue(session, services.addresses, msg,
                                      "frontdesk@practice.example.org", "staff_copy").id)
    return ids


def lease_config(tmp_path, db_url, seconds: float):
    return load_config(write_config(tmp_path, db_url),
                       overrides={"delivery": {"lease_seconds": seconds}})


async def test_a_dead_peers_claim_runs_out_within_the_lease(tmp_path, db_url, config):
    services = Services.create(lease_config(tmp_path, db_url, 5))
    try:
        [row_id] = queue_mail(services)
        with services.transaction() as session:  # claimed by a process on another machine
            row = session.get(Outbox, row_id)
            row.claimed_by = "elsewhere/0/0 4242 1 abc"
            row.lease_until = utcnow() + dt.timedelta(seconds=5)
        claimed = time.monotonic()
        backend = Recording()
        worker = OutboxWorker(services, backend=backend)
        task = asyncio.create_task(worker.run())
        await asyncio.sleep(2)
        assert backend.delivered == []  # not ours to judge: its lease still runs
        await wait_until(lambda: backend.delivered == [row_id], 10)
        assert 4 < time.monotonic() - claimed < 5 + 2  # out with the lease, and a poll
        worker.stop()
        await task
    finally:
        services.close()


async def test_a_live_workers_claim_is_renewed_past_the_lease(tmp_path, db_url, config):
    """A send slower than the lease keeps its claim (heartbeat): a second worker does not
    take the row, so nothing is sent twice."""
    services = Services.create(lease_config(tmp_path, db_url, 5))
    try:
        [row_id] = queue_mail(services)
        slow, other = Recording(delay=9), Recording()
        first = OutboxWorker(services, backend=slow)
        task = asyncio.create_task(first.run())
        await wait_until(lambda: claims_of(services) != [None], 5)
        for _ in range(8):  # past the 5 s lease, while the first still sends
            await asyncio.sleep(1)
            assert await OutboxWorker(services, backend=other).deliver_batch() == 0
        await wait_until(lambda: slow.delivered == [row_id], 10)
        first.stop()
        await task
        assert other.delivered == []
    finally:
        services.close()


def claims_of(services) -> list:
    with services.factory() as session:
        return list(session.scalars(select(Outbox.claimed_by)))


async def test_maildir_folders_are_fsynced_once_per_batch(tmp_path, db_url, config,
                                                          monkeypatch):
    services = Services.create(config)
    try:
        ids = queue_mail(services, 5)
        synced = []
        real = maildir_module._fsync_dir
        monkeypatch.setattr(maildir_module, "_fsync_dir",
                            lambda path: (synced.append(path), real(path)))
        worker = OutboxWorker(services)
        assert await worker.deliver_batch() == 5
        folder = services.cfg.maildir_root / "frontdesk@practice.example.org" / "new"
        assert synced == [folder]  # five files, one directory fsync
        assert len(os.listdir(folder)) == 5
        with services.factory() as session:
            assert {r.state for r in session.scalars(select(Outbox))} == {"sent"}
        assert sorted(ids) == sorted(int(n.split(".Q")[1].split(".")[0])
                                     for n in os.listdir(folder))
    finally:
        services.close()


def test_owner_names_a_dead_process_of_this_machine_only():
    proc = subprocess.Popen(["sleep", "30"])
    machine = owner.me().split(" ")[0]
    alive = f"{machine} {proc.pid} {owner.start_ticks(proc.pid)} x"
    assert not owner.is_dead(alive)
    assert owner.is_dead(f"{machine} {proc.pid} 1 x")  # that PID, another start: reused
    proc.kill()
    proc.wait()
    assert owner.is_dead(alive)
    assert not owner.is_dead(owner.me())
    for hostile in ("", "x", "other/1/2 1 1 x", f"{machine} notapid 1 x",
                    f"{machine} 1 1 x extra", f"{machine} -1 1 x"):
        assert not owner.is_dead(hostile)


@pytest.mark.parametrize("value", ["0", "4", "-30", "1e9", "nan", "inf", '"soon"', "true"])
def test_check_config_refuses_a_bad_lease(tmp_path, value):
    bad = tmp_path / "config.toml"
    bad.write_text(f"[delivery]\nlease_seconds = {value}\n")
    proc = subprocess.run([CLI, "--config", str(bad), "check-config"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode != 0
    assert str(bad) in proc.stderr and "[delivery] lease_seconds" in proc.stderr


def test_the_lease_is_thirty_seconds_unless_configured(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text("")
    assert load_config(path).delivery.lease_seconds == 30
