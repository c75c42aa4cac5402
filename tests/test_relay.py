"""The outbox over a real SMTP relay on loopback: retries, failures, TLS, races."""
from __future__ import annotations

import asyncio
from email.message import EmailMessage

import pytest
from sqlalchemy import select

from gateway.config import load_config
from gateway.delivery.worker import OutboxWorker
from gateway.models import Outbox
from gateway.services import Services
from gateway import outbox
from tests.conftest import write_config
from tests.relay import RelayHandler, make_cert, start_relay


def relay_services(tmp_path, db_url, port, tls="none", ca=""):
    path = write_config(tmp_path, db_url)
    cfg = load_config(path, overrides={"delivery": {
        "mode": "relay", "relay_host": "127.0.0.1", "relay_port": port, "relay_tls": tls,
        "relay_ca_file": str(ca), "retry_base_seconds": 0.01, "relay_timeout_seconds": 5}})
    return Services.create(cfg)


def queue(services, n=1, recipient="ana@example.com"):
    with services.transaction() as session:
        for i in range(n):
            msg = EmailMessage()
            msg["From"], msg["To"], msg["Subject"] = "portal@portal.example.org", recipient, f"n{i}"
            msg.set_content("Something is waiting for you in the portal.")
            outbox.enqueue(session, services.addresses, msg, recipient, "test")


def states(services):
    with services.factory() as session:
        return [(r.state, r.attempts) for r in session.scalars(select(Outbox).order_by(Outbox.id))]


async def drain(worker, rounds=50):
    for _ in range(rounds):
        await worker.deliver_batch()
        if all(state != "queued" for state, _ in states(worker.s)):
            return
        await asyncio.sleep(0.03)


@pytest.fixture
def migrated(config):
    return config  # the config fixture migrates the database


async def relay_case(tmp_path, db_url, script, **kw):
    handler = RelayHandler(script)
    server, port = await start_relay(handler, kw.pop("cert", None), kw.pop("implicit", False))
    services = relay_services(tmp_path, db_url, port, **kw)
    return handler, server, services


async def test_451_then_250_is_delivered_once_after_retry(tmp_path, db_url, migrated):
    handler, server, services = await relay_case(tmp_path, db_url, ["451 4.3.0 busy"])
    queue(services)
    worker = OutboxWorker(services)
    await drain(worker)
    await worker.backend.close()
    server.close()
    assert states(services) == [("sent", 2)]
    assert len(handler.received) == 1
    mail_from, rcpts, _ = handler.received[0]
    assert mail_from.startswith("bounces+") and rcpts == ["ana@example.com"]


async def test_550_fails_at_once_without_retry(tmp_path, db_url, migrated):
    handler, server, services = await relay_case(tmp_path, db_url, ["550 5.1.1 no such user"])
    queue(services)
    worker = OutboxWorker(services)
    await drain(worker)
    server.close()
    assert states(services) == [("failed", 1)] and handler.received == []
    with services.factory() as session:
        assert "550" in session.scalars(select(Outbox)).one().last_error


async def test_dropped_connection_mid_data_is_retried_and_delivered_once(tmp_path, db_url,
                                                                         migrated):
    handler, server, services = await relay_case(tmp_path, db_url, ["drop"])
    queue(services, 3)
    worker = OutboxWorker(services)
    await drain(worker)
    await worker.backend.close()
    server.close()
    assert [s for s, _ in states(services)] == ["sent"] * 3
    assert sorted(handler.outbox_ids()) == sorted({i for i in handler.outbox_ids()})
    assert len(handler.received) == 3


async def test_relay_without_starttls_gets_nothing_in_plaintext(tmp_path, db_url, migrated):
    handler, server, services = await relay_case(tmp_path, db_url, [], tls="starttls")
    queue(services)
    worker = OutboxWorker(services)
    await worker.deliver_batch()
    server.close()
    assert handler.mail_commands == 0 and handler.received == []
    with services.factory() as session:
        row = session.scalars(select(Outbox)).one()
        assert row.state == "queued" and "STARTTLS" in row.last_error


@pytest.mark.parametrize("implicit", [False, True])
async def test_tls_relay_with_verified_certificate(tmp_path, db_url, migrated, implicit):
    cert = make_cert(tmp_path)
    handler, server, services = await relay_case(
        tmp_path, db_url, [], cert=cert, implicit=implicit,
        tls="implicit" if implicit else "starttls", ca=cert[0])
    queue(services, 2)
    worker = OutboxWorker(services)
    await drain(worker)
    await worker.backend.close()
    server.close()
    assert [s for s, _ in states(services)] == ["sent", "sent"]
    assert len(handler.received) == 2
    if not implicit:
        assert handler.tls_sessions == 2


async def test_untrusted_certificate_is_refused(tmp_path, db_url, migrated):
    cert = make_cert(tmp_path)
    handler, server, services = await relay_case(tmp_path, db_url, [], cert=cert,
                                                 tls="starttls")  # CA not trusted
    queue(services)
    worker = OutboxWorker(services)
    await worker.deliver_batch()
    server.close()
    assert handler.received == [] and states(services) == [("queued", 1)]
    assert handler.mail_commands == 0  # no fallback to plaintext after the failed handshake
    with services.factory() as session:  # refused for the certificate, not for anything else
        error = session.scalars(select(Outbox)).one().last_error.lower()
    assert "sslcertverificationerror" in error, error


def test_plaintext_relay_must_be_loopback(tmp_path):
    from gateway.config import ConfigError
    path = write_config(tmp_path, "sqlite:///x.db")
    with pytest.raises(ConfigError, match=r"\[delivery\] relay_tls"):
        load_config(path, overrides={"delivery": {"relay_tls": "none",
                                                  "relay_host": "relay.example.com"}})


async def test_two_workers_race_over_500_rows_each_delivered_once(tmp_path, db_url,
                                                                  migrated):
    handler = RelayHandler()
    server, port = await start_relay(handler)
    first = relay_services(tmp_path, db_url, port)
    second = relay_services(tmp_path, db_url, port)
    queue(first, 500)
    workers = [OutboxWorker(first, batch=20), OutboxWorker(second, batch=20)]

    async def run(worker):
        while await worker.deliver_batch():
            pass
    await asyncio.gather(*(run(w) for w in workers))
    for w in workers:
        await w.backend.close()
    server.close()
    ids = handler.outbox_ids()
    assert len(ids) == 500 and len(set(ids)) == 500
    assert {s for s, _ in states(first)} == {"sent"}
    first.close()
    second.close()
