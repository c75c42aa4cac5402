"""Two `serve` processes on one PostgreSQL database (different ports, as two hosts would
be): sessions to both at once, and every message answered 250 is stored once, every
acknowledgement and staff copy reaches the relay once, whichever instance sends it."""
from __future__ import annotations

import time

import pytest

from tests.processes import Relay, Senders, Serve, gateway_config, prepare_database, stored


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_two_instances_on_one_database_lose_and_double_nothing(tmp_path, db_url):
    relay = Relay()
    config_a, port_a = gateway_config(tmp_path, db_url, "a.toml", relay_port=relay.port)
    config_b, port_b = gateway_config(tmp_path, db_url, "b.toml", relay_port=relay.port)
    prepare_database(db_url, config_a)
    a, b = Serve(config_a, port_a), Serve(config_b, port_b)
    try:
        a.wait_logs("listening")
        b.wait_logs("listening")
        senders = Senders([port_a, port_b], sessions=8, per=6)
        senders.join()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # both outbox workers claim from one queue
            ids, outbox = stored(db_url, config_a)
            if outbox and {state for _, _, state in outbox} == {"sent"}:
                break
            time.sleep(0.2)
        assert a.stop() == 0 and b.stop() == 0
    finally:
        a.kill()
        b.kill()
        relay.stop()
    assert len(senders.acked) == 48 and not senders.refused
    assert a.logs("message accepted") and b.logs("message accepted")
    ids, outbox = stored(db_url, config_a)
    assert len(ids) == len(set(ids)), "a message was stored twice"
    assert sorted(ids) == sorted(senders.acked)
    assert len(outbox) == 2 * len(ids)
    assert {state for _, _, state in outbox} == {"sent"}
    sent = relay.sent()
    assert sorted(sent) == sorted(row_id for row_id, _, _ in outbox)
    assert set(sent.values()) == {1}, "a mail was sent twice"
